"""Offline security reviewer: Python's ``ast`` for risky calls, regexes for leaked credentials.

Rules: SEC000 parse-error (info), SEC001 hardcoded-secret, SEC002 eval-exec, SEC003 shell-command,
SEC004 unsafe-deserialization, SEC005 sql-injection. The AST rules resolve import aliases, so
``import subprocess as sp; sp.run(cmd, shell=True)`` is caught; the regexes run on every line of
every file (comments and unparseable files included) because a leaked key is leaked anywhere.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from gateway.agents.code_input import ParseError, SourceFile, parse_python, sources_from_call
from gateway.agents.findings import SEVERITY_RANK, Finding, build_reply, count, no_code_reply
from gateway.agents.security_ast import SecurityVisitor, mask_secret
from gateway.runtime import AgentCall, Emitter, Reply

AGENT = "security"
PARSE_ERROR = "SEC000 parse-error"
HARDCODED_SECRET = "SEC001 hardcoded-secret"
SECRET_HINT = "revoke this credential and load it from the environment or a secret store"


@dataclass(frozen=True)
class SecretPattern:
    """A credential format recognisable on sight."""

    label: str
    regex: re.Pattern[str]


SECRET_PATTERNS: tuple[SecretPattern, ...] = (
    SecretPattern("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    SecretPattern("GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_\w{22,255})\b")),
    SecretPattern("private key block", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    SecretPattern("API secret key", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}")),
    SecretPattern("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
)


def scan_patterns(source: SourceFile) -> list[Finding]:
    """Credentials of a known format anywhere in the text."""
    findings = []
    for number, text in enumerate(source.text.splitlines(), start=1):
        for pattern in SECRET_PATTERNS:
            match = pattern.regex.search(text)
            if match is None:
                continue
            shown = "" if pattern.label == "private key block" else f": {mask_secret(match.group())}"
            message = f"{pattern.label} in source{shown}"
            findings.append(Finding(source.name, number, HARDCODED_SECRET, "critical", message, SECRET_HINT, AGENT))
    return findings


def review_source(source: SourceFile) -> list[Finding]:
    """Every security finding in one file."""
    findings = scan_patterns(source)
    tree = parse_python(source) if source.is_python else None
    if isinstance(tree, ParseError):
        message = f"could not parse as Python ({tree.message}); only credential patterns were checked"
        findings.append(Finding(source.name, tree.line, PARSE_ERROR, "info", message, "fix the syntax error", AGENT))
    elif tree is not None:
        visitor = SecurityVisitor(source.name)
        try:
            visitor.visit(tree)
        except RecursionError:
            message = "too deeply nested to analyse; only credential patterns were checked"
            findings.append(Finding(source.name, 0, PARSE_ERROR, "info", message, "simplify the expression", AGENT))
        findings += visitor.findings
    return _one_secret_per_line(findings)


def _one_secret_per_line(findings: list[Finding]) -> list[Finding]:
    # A token assigned to API_TOKEN is found by name and by format; report the more severe once.
    best: dict[tuple[str, int], Finding] = {}
    others = []
    for finding in findings:
        if finding.rule != HARDCODED_SECRET:
            others.append(finding)
            continue
        key = (finding.file, finding.line)
        kept = best.get(key)
        if kept is None or SEVERITY_RANK[finding.severity] < SEVERITY_RANK[kept.severity]:
            best[key] = finding
    return others + list(best.values())


async def run(call: AgentCall, emit: Emitter) -> Reply:
    """Runtime entry point: review the call's code for security problems."""
    sources = sources_from_call(call)
    if not sources:
        return no_code_reply()
    await emit.progress(f"{AGENT}: scanning {count(len(sources), 'file')}")
    findings: list[Finding] = []
    for source in sources:
        # Off the event loop: a large file should not stall the gateway's other requests.
        findings += await asyncio.to_thread(review_source, source)
    await emit.progress(f"{AGENT}: {count(len(findings), 'finding')}")
    return build_reply(AGENT, "Security review", findings, artifact_name="security-findings")
