// Peers and trust; operations: the key set, the main metrics, recent audit entries.

import { h, replace, when } from "./dom.js";
import { UI, agentPath } from "./links.js";
import { api } from "./session.js";

function ms(seconds) {
  return `${(seconds * 1000).toFixed(1)} ms`;
}

export async function peersPage(root) {
  const { gatewayId, peers } = await api("/peers");
  replace(root,
    h("h1", {}, "Peers"),
    h("p", { class: "meta" }, "This gateway's id on hop paths: ", h("code", {}, gatewayId)),
    peers.length ? h("div", { "data-role": "peers" }, peers.map((peer) =>
      h("article", { class: "card", "data-peer": peer.name },
        h("h2", {}, peer.name, " ", h("small", {}, `${peer.baseUrl || ""} · from the ${peer.configured}`)),
        peer.trust ? h("p", {}, "Trust anchors: ",
          peer.trust.pinnedKids.length ? `pinned keys ${peer.trust.pinnedKids.join(", ")}` : "no pinned keys",
          peer.trust.jkuOrigins.length ? `; key sets fetched from ${peer.trust.jkuOrigins.join(", ")}` : "",
          `; algorithms ${peer.trust.algorithms.join(", ")}`,
          peer.trust.requireSignature ? "; signatures required" : "; unsigned cards accepted")
          : h("p", {}, "Trust anchors: each agent's own file sets them, and they differ."),
        h("p", {}, `Relays: ${peer.relay.count}`, peer.relay.count ? ` · mean ${ms(peer.relay.meanS)} · p95 ≤ ${ms(peer.relay.p95S)}` : ""),
        h("table", {},
          h("thead", {}, h("tr", {}, ["agent", "card", "last check", "problem"].map((t) => h("th", {}, t)))),
          h("tbody", {}, peer.agents.map((a) => h("tr", { class: a.health === "trusted" ? "" : "out-of-service" },
            h("td", {}, h("a", { href: agentPath(a.name) }, a.name)),
            h("td", {}, a.health === "trusted" ? "trusted" : `out of service: ${a.health}`),
            h("td", {}, a.checkedAt ? when(a.checkedAt * 1000) : "not yet"),
            h("td", {}, a.problem || "")))))))) : h("p", { class: "muted", "data-role": "no-peers" }, "No peers are configured (the peers setting)."));
  document.body.dataset.loaded = "peers";
}

function counts(byName) {
  const entries = Object.entries(byName || {}).filter(([, n]) => n);
  return entries.length ? entries.map(([name, n]) => `${n} ${name}`).join(", ") : "none";
}

function metricsView(metrics, previous) {
  const rate = (agent, field) => {
    const before = previous?.agents.find((a) => a.agent === agent);
    if (!before || metrics.at <= previous.at) return null;
    return (metrics.agents.find((a) => a.agent === agent)[field] - before[field]) / (metrics.at - previous.at);
  };
  return h("section", { "data-role": "metrics" },
    h("h2", {}, "Metrics"),
    h("p", { class: "meta", "data-role": "totals" },
      `up ${Math.round(metrics.uptimeS)} s · ${metrics.streamsOpen} stream(s) open · workflow runs ended: ${counts(metrics.runs)} · stored tasks: ${counts(metrics.tasks)}`),
    h("table", {},
      h("thead", {}, h("tr", {}, ["agent", "requests", "per s", "errors", "refused", "mean", "p95 ≤"].map((t) => h("th", {}, t)))),
      h("tbody", {}, metrics.agents.filter((a) => a.requests).map((a) => {
        const perS = rate(a.agent, "requests");
        return h("tr", {},
          h("td", {}, a.agent), h("td", {}, String(a.requests)),
          h("td", {}, perS === null ? (a.requests / Math.max(1, metrics.uptimeS)).toFixed(2) : perS.toFixed(2)),
          h("td", { class: a.errors ? "bad" : "" }, String(a.errors)), h("td", {}, String(a.refused)),
          h("td", {}, ms(a.meanS)), h("td", {}, ms(a.p95S)));
      }))));
}

export async function operationsPage(root, app) {
  const params = new URLSearchParams(location.search);
  const [keys, audit, metrics] = await Promise.all([
    api("/keys"),
    api("/audit", { limit: 25, before: params.get("before") || "" }),
    api("/metrics").catch((error) => ({ refused: error.message })),
  ]);
  let previous = metrics.refused ? null : metrics;
  const metricsBox = h("div", {}, metrics.refused ? h("p", { class: "muted" }, `Metrics: ${metrics.refused}`) : metricsView(metrics));
  const problem = h("p", { class: "error", "data-role": "metrics-error" });
  const refresh = h("button", { type: "button", "data-role": "refresh-metrics", on: { click: async () => {
    try {
      const next = await api("/metrics");
      replace(metricsBox, metricsView(next, previous));
      previous = next;
      problem.textContent = "";
    } catch (error) {  // the figures above stay, said to be from the last refresh that worked; the button stays
      problem.textContent = `Metrics could not be refreshed (the figures above are older): ${error.message}`;
    }
  } } }, "Refresh metrics");
  replace(root,
    h("h1", {}, "Operations"),
    h("section", { "data-role": "keys" },
      h("h2", {}, "Card-signing keys"),
      keys.signing ? h("table", {},
        h("thead", {}, h("tr", {}, ["kid", "algorithm", "state", "published until"].map((t) => h("th", {}, t)))),
        h("tbody", {}, keys.keys.map((k) => h("tr", { "data-kid": k.kid },
          h("td", {}, h("code", {}, k.kid)), h("td", {}, k.alg), h("td", {}, k.state), h("td", {}, k.notAfter ? when(k.notAfter) : "—")))))
        : h("p", { class: "muted" }, "Card signing is off.")),
    metricsBox,
    metrics.refused ? null : [refresh, problem],
    h("section", { "data-role": "audit" },
      h("h2", {}, app.me?.operator ? "Audit (every caller)" : "Audit (your calls)"),
      audit.entries.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["at", "kind", "caller", "agent", "binding", "method", "outcome", "detail"].map((t) => h("th", {}, t)))),
        h("tbody", {}, audit.entries.map((e) => h("tr", {},
          [e.at, e.kind, e.caller, e.agent, e.binding, e.method, e.outcome, e.detail].map((v) => h("td", {}, v || "")))))) : h("p", { class: "muted" }, "No audit entries."),
      audit.next ? h("p", { class: "pager" }, h("a", { href: `${UI}operations?before=${audit.next}`, "data-role": "older" }, "Older →")) : null));
  document.body.dataset.loaded = "operations";
}
