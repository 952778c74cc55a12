"""Offline style reviewer: the real ``ruff`` linter, one subprocess per file, code fed on stdin.

``--isolated`` keeps the caller's code away from any ruff configuration on this machine, so the
same code gets the same verdict everywhere. Severity: syntax errors and undefined names are
"high", other pyflakes (F) codes "medium", everything else "low".
"""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

from gateway.agents.code_input import SourceFile, sources_from_call
from gateway.agents.findings import Finding, build_reply, count, no_code_reply
from gateway.runtime import AgentCall, Emitter, Reply

AGENT = "style"
SOURCE = "ruff"
SELECT = "E,F,W,I,B,UP,SIM"
TIMEOUT_SECONDS = 30.0
MAX_CONCURRENT = 4
SYNTAX_CODE = "invalid-syntax"
# Code that cannot run as written: undefined names, syntax-level misuse (return outside function...).
HIGH_PREFIXES = ("E9", "F82", "F7", SYNTAX_CODE)
UNAVAILABLE_TEXT = "The style reviewer needs the ruff linter, which is not installed here (pip install ruff)."


class RuffError(RuntimeError):
    """ruff ran but did not produce a usable result."""


def find_ruff() -> str | None:
    """The ruff binary: the one shipped with the ``ruff`` package, else one on ``PATH``."""
    try:
        from ruff import find_ruff_bin  # optional at run time: the gateway must import without it
    except ImportError:
        return shutil.which("ruff")
    try:
        return str(find_ruff_bin())
    except FileNotFoundError:
        return shutil.which("ruff")


def severity_of(code: str) -> str:
    """The severity of one ruff code."""
    if code.startswith(HIGH_PREFIXES):
        return "high"
    return "medium" if code.startswith("F") else "low"


def finding_from_ruff(item: dict[str, Any], file: str) -> Finding:
    """One entry of ``ruff check --output-format json`` as a finding on ``file``."""
    code = str(item.get("code") or SYNTAX_CODE)
    name = str(item.get("name") or "")
    rule = f"{code} {name}" if name and name != code else code
    line = int((item.get("location") or {}).get("row") or 0)
    fix = item.get("fix") or {}
    url = item.get("url")
    hint = str(fix.get("message") or (f"see {url}" if url else ""))
    return Finding(file, line, rule, severity_of(code), str(item.get("message") or ""), hint, SOURCE)


async def lint_source(ruff: str, source: SourceFile) -> list[Finding]:
    """Run ruff on one file's text; raises ``RuffError`` when ruff crashes or its output is unreadable."""
    args = ("check", "--output-format", "json", "--no-cache", "--isolated", "--select", SELECT)
    pipe = asyncio.subprocess.PIPE
    try:
        process = await asyncio.create_subprocess_exec(
            ruff, *args, f"--stdin-filename={source.name}", "-", stdin=pipe, stdout=pipe, stderr=pipe
        )
    except OSError as exc:
        # strerror, not str(exc): the binary's path on this machine is no business of the caller's.
        raise RuffError(f"cannot start ruff: {exc.strerror or type(exc).__name__}") from exc
    try:
        out, err = await process.communicate(source.text.encode())
    finally:
        # Cancelled (by a timeout, or the task itself) while ruff still runs: never leave it behind.
        if process.returncode is None:
            process.kill()
            await process.wait()
    # ruff exits 1 when it found problems; anything else is ruff itself failing.
    if process.returncode not in (0, 1):
        detail = err.decode(errors="replace").strip()[:500]
        raise RuffError(f"ruff failed on {source.name} (exit {process.returncode}): {detail}")
    return _parse_output(out, source.name)


def _parse_output(out: bytes, file: str) -> list[Finding]:
    try:
        items = json.loads(out)
    except json.JSONDecodeError as exc:
        raise RuffError(f"ruff's output for {file} is not JSON: {out[:200]!r}") from exc
    if not isinstance(items, list):
        raise RuffError(f"ruff's output for {file} is not a list of diagnostics")
    return [finding_from_ruff(item, file) for item in items]


async def lint_all(ruff: str, sources: list[SourceFile]) -> list[Finding]:
    """Lint every file, a few ruff processes at a time; the first failure cancels the rest."""
    gate = asyncio.Semaphore(MAX_CONCURRENT)

    async def lint_one(source: SourceFile) -> list[Finding]:
        async with gate:
            try:
                async with asyncio.timeout(TIMEOUT_SECONDS):
                    return await lint_source(ruff, source)
            except TimeoutError as exc:
                raise RuffError(f"ruff took longer than {TIMEOUT_SECONDS:g}s on {source.name}") from exc

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(lint_one(source)) for source in sources]
    except* RuffError as errors:
        raise errors.exceptions[0] from None
    return [finding for task in tasks for finding in task.result()]


async def run(call: AgentCall, emit: Emitter) -> Reply:
    """Runtime entry point: lint the call's Python code with ruff."""
    sources = sources_from_call(call)
    if not sources:
        return no_code_reply()
    ruff = find_ruff()
    if ruff is None:
        return Reply(state="failed", text=UNAVAILABLE_TEXT)
    python = [source for source in sources if source.is_python]
    notes = [f"skipped {count(len(sources) - len(python), 'non-Python file')}"] if len(python) < len(sources) else []
    await emit.progress(f"{AGENT}: linting {count(len(python), 'file')} with ruff")
    try:
        findings = await lint_all(ruff, python)
    except RuffError as exc:
        return Reply(state="failed", text=f"The style reviewer could not run ruff: {exc}")
    await emit.progress(f"{AGENT}: {count(len(findings), 'finding')}")
    return build_reply(AGENT, "Style review", findings, artifact_name="style-findings", notes=notes)
