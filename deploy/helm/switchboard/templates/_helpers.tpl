{{/* Names and labels. */}}
{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchboard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "switchboard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "switchboard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "switchboard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "switchboard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The in-cluster host of the Service. */}}
{{- define "switchboard.serviceHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "switchboard.fullname" .) .Release.Namespace }}
{{- end }}

{{/* The Host names /mcp accepts besides the public URL's: the Service's in-cluster names and mcp.allowedHosts. */}}
{{- define "switchboard.mcpAllowedHosts" -}}
{{- $svc := include "switchboard.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (include "switchboard.serviceHost" .) }}
{{- concat $names .Values.mcp.allowedHosts | uniq | join "," }}
{{- end }}

{{/* The URL clients reach the gateway at: publicUrl, else the first ingress host, else the Service. */}}
{{- define "switchboard.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- .Values.publicUrl | trimSuffix "/" }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := (first .Values.ingress.hosts).host }}
{{- printf "%s://%s" (ternary "https" "http" (gt (len .Values.ingress.tls) 0)) $host }}
{{- else }}
{{- printf "http://%s:%v" (include "switchboard.serviceHost" .) .Values.service.httpPort }}
{{- end }}
{{- end }}

{{/* How many pods can run at once: the replicas, or the autoscaler's ceiling. */}}
{{- define "switchboard.maxPods" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.maxReplicas }}{{ else }}{{ .Values.replicaCount }}{{ end }}
{{- end }}

{{- define "switchboard.hasDatabase" -}}
{{- if or .Values.database.url .Values.database.existingSecret }}true{{ end }}
{{- end }}

{{/* Whether callers must authenticate with what the values give (before a generated key). */}}
{{- define "switchboard.hasGivenAuth" -}}
{{- if or .Values.auth.apiKeys .Values.auth.existingSecret .Values.auth.issuers }}true{{ end }}
{{- end }}

{{- define "switchboard.generatesKey" -}}
{{- if and .Values.auth.generateKey (not (include "switchboard.hasGivenAuth" .)) (not .Values.auth.insecure) }}true{{ end }}
{{- end }}

{{- define "switchboard.generatesSigningKey" -}}
{{- if and (not .Values.signing.keys) (not .Values.signing.existingSecret) }}true{{ end }}
{{- end }}

{{/* Whether the chart's Secret holds the API key file: the given lines plus the generated admin key's
     (with auth.existingSecret that Secret's file is mounted instead, and auth.apiKeys go in the env). */}}
{{- define "switchboard.chartKeyFile" -}}
{{- if and (not .Values.auth.existingSecret) (or .Values.auth.apiKeys (include "switchboard.generatesKey" .)) }}true{{ end }}
{{- end }}

{{/* Refuse values the gateway could not run safely: the same rule as its own bind check, and no
     replicas that would each keep their own SQLite store. */}}
{{- define "switchboard.checks" -}}
{{- if and (not (include "switchboard.hasGivenAuth" .)) (not (include "switchboard.generatesKey" .)) (not .Values.auth.insecure) }}
{{- fail "auth: the gateway serves 0.0.0.0 and refuses to start without authentication: give auth.apiKeys, auth.existingSecret or auth.issuers, leave auth.generateKey on, or set auth.insecure (never in production)" }}
{{- end }}
{{- if and (gt (int (include "switchboard.maxPods" .)) 1) (not (include "switchboard.hasDatabase" .)) }}
{{- fail "replicas above one (replicaCount or autoscaling.maxReplicas) need a shared PostgreSQL database (database.url or database.existingSecret): each pod would keep its own SQLite store" }}
{{- end }}
{{- if and .Values.persistence.enabled (gt (int (include "switchboard.maxPods" .)) 1) (has "ReadWriteOnce" .Values.persistence.accessModes) }}
{{- fail "persistence: a ReadWriteOnce data volume cannot be shared by more than one pod; with PostgreSQL the data volume needs no persistence" }}
{{- end }}
{{- end }}
