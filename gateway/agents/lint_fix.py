"""Offline lint-fix pair for maker-checker, on the real ``ruff``: ``fix`` makes, ``check`` checks.

``fix`` runs ``ruff check --fix`` then ``ruff format`` on each file (code on stdin, ``--isolated``
so no local configuration changes the verdict) and returns the code. ``check`` runs ``ruff check``
and ``ruff format --check`` and says ``APPROVED`` when neither finds anything. Both read the code
from a data part's ``files`` (``[{name, code}]``, what ``fix`` returns), else from maker-checker's
revision envelope (``maker_checker.previous_output.data.files``), else the call's files or text.
ruff is deterministic, so a second ``fix`` changes nothing unless told to go further: given the
checker's feedback that fixable findings remain, it adds ``--unsafe-fixes``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from gateway.agents.code_input import SNIPPET_NAME, SourceFile, sources_from_call
from gateway.agents.findings import Finding, build_reply, count, no_code_reply
from gateway.agents.style import SELECT, TIMEOUT_SECONDS, UNAVAILABLE_TEXT, RuffError, find_ruff, finding_from_ruff
from gateway.runtime import AgentCall, Emitter, Reply

FIX_AGENT = "lint-fix"
CHECK_AGENT = "lint-check"
CHECK_ARGS = ("check", "--isolated", "--no-cache", "--select", SELECT)
FORMAT_ARGS = ("format", "--isolated", "--no-cache")
FIXABLE = frozenset({"safe", "unsafe"})  # "display-only" fixes are never applied
UNFORMATTED = "ruff format would reformat this file"
SOURCE = "ruff"
_FIXABLE_TEXT = re.compile(r"\b([1-9]\d*) fixable\b")


async def run_ruff(ruff: str, args: tuple[str, ...], source: SourceFile) -> tuple[int, str, str]:
    """Run ruff with ``source`` on stdin; its exit code, stdout and stderr. Raises ``RuffError`` if it cannot run."""
    pipe = asyncio.subprocess.PIPE
    argv = (*args, f"--stdin-filename={source.name}", "-")
    try:
        process = await asyncio.create_subprocess_exec(ruff, *argv, stdin=pipe, stdout=pipe, stderr=pipe)
    except OSError as exc:
        raise RuffError(f"cannot start ruff: {exc.strerror or type(exc).__name__}") from exc
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            out, err = await process.communicate(source.text.encode())
    except TimeoutError as exc:
        raise RuffError(f"ruff took longer than {TIMEOUT_SECONDS:g}s on {source.name}") from exc
    finally:
        if process.returncode is None:  # cancelled or timed out: never leave ruff behind
            process.kill()
            await process.wait()
    code = process.returncode
    assert code is not None
    return code, out.decode(errors="replace"), err.decode(errors="replace")


def sources_of(call: AgentCall) -> tuple[SourceFile, ...]:
    """The files to work on (see the module docstring for where they come from)."""
    for part in call.data:
        found = _files_in(part)
        if found:
            return found
    return sources_from_call(call)


def _files_in(part: Mapping[str, Any]) -> tuple[SourceFile, ...]:
    envelope = part.get("maker_checker")
    if isinstance(envelope, Mapping):
        previous = envelope.get("previous_output")
        data = previous.get("data") if isinstance(previous, Mapping) else None
        return _files_in(data) if isinstance(data, Mapping) else ()
    files = part.get("files")
    if not isinstance(files, list):
        return ()
    return tuple(
        SourceFile(str(entry.get("name") or SNIPPET_NAME), entry["code"])
        for entry in files
        if isinstance(entry, Mapping) and isinstance(entry.get("code"), str)
    )


def wants_unsafe_fixes(call: AgentCall) -> bool:
    """Whether a checker's feedback (in data or in the task's history) still reports fixable findings."""
    for part in call.data:
        envelope = part.get("maker_checker")
        feedback = envelope.get("feedback") if isinstance(envelope, Mapping) else None
        report = feedback.get("data") if isinstance(feedback, Mapping) else part
        if isinstance(report, Mapping) and report.get("clean") is False and _positive(report.get("fixable")):
            return True
    return any(turn.role == "agent" and _FIXABLE_TEXT.search(turn.text) for turn in call.history)


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


async def fix_source(ruff: str, source: SourceFile, unsafe: bool) -> tuple[SourceFile, list[str]]:
    """``source`` with ruff's fixes applied, then formatted; notes say what could not be done."""
    args = (*CHECK_ARGS, "--fix", *(("--unsafe-fixes",) if unsafe else ()))
    code, out, err = await run_ruff(ruff, args, source)
    if code not in (0, 1):
        raise RuffError(f"ruff failed on {source.name} (exit {code}): {err.strip()[:500]}")
    fixed = dataclasses.replace(source, text=out)
    code, out, err = await run_ruff(ruff, FORMAT_ARGS, fixed)
    if code != 0:  # a syntax error: ruff format refuses, the fixed code stays as it is
        return fixed, [f"could not format {source.name}: {_first_line(err)}"]
    return dataclasses.replace(fixed, text=out), []


async def check_source(ruff: str, source: SourceFile) -> tuple[list[Finding], int]:
    """ruff's findings on ``source`` (an unformatted file is one more) and how many of them ruff can fix."""
    code, out, err = await run_ruff(ruff, (*CHECK_ARGS, "--output-format", "json"), source)
    if code not in (0, 1):
        raise RuffError(f"ruff failed on {source.name} (exit {code}): {err.strip()[:500]}")
    try:
        items = json.loads(out)
    except json.JSONDecodeError as exc:
        raise RuffError(f"ruff's output for {source.name} is not JSON: {out[:200]!r}") from exc
    if not isinstance(items, list):
        raise RuffError(f"ruff's output for {source.name} is not a list of diagnostics")
    findings = [finding_from_ruff(item, source.name) for item in items]
    fixable = sum(1 for item in items if (item.get("fix") or {}).get("applicability") in FIXABLE)
    code, _, _ = await run_ruff(ruff, (*FORMAT_ARGS, "--check"), source)
    if code == 1:  # exit 2 is a syntax error, already among the findings
        findings.append(Finding(source.name, 0, "format", "low", UNFORMATTED, "run ruff format", SOURCE))
        fixable += 1
    return findings, fixable


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no detail")


def _render_files(files: list[SourceFile]) -> str:
    if len(files) == 1:
        return files[0].text
    return "\n\n".join(f"# {source.name}\n```python\n{source.text}```" for source in files)


async def fix(call: AgentCall, emit: Emitter) -> Reply:
    """Runtime entry point (the maker): fix and format the call's Python code with ruff."""
    sources = sources_of(call)
    if not sources:
        return no_code_reply()
    ruff = find_ruff()
    if ruff is None:
        return Reply(state="failed", text=UNAVAILABLE_TEXT)
    unsafe = wants_unsafe_fixes(call)
    mode = " (with unsafe fixes)" if unsafe else ""
    await emit.progress(f"{FIX_AGENT}: fixing {count(len(sources), 'file')} with ruff{mode}")
    fixed: list[SourceFile] = []
    notes: list[str] = []
    try:
        for source in sources:
            done, more = await fix_source(ruff, source, unsafe) if source.is_python else (source, [])
            fixed.append(done)
            notes += more
    except RuffError as exc:
        return Reply(state="failed", text=f"The lint fixer could not run ruff: {exc}")
    changed = [after.name for before, after in zip(sources, fixed, strict=True) if before.text != after.text]
    await emit.progress(f"{FIX_AGENT}: {count(len(changed), 'file')} changed")
    data = {
        "files": [{"name": source.name, "code": source.text} for source in fixed],
        "changed": bool(changed),
        "changed_files": changed,
        "unsafe_fixes": unsafe,
        "notes": notes,
    }
    return Reply(text=_render_files(fixed), data=data, artifact_name="fixed-code")


async def check(call: AgentCall, emit: Emitter) -> Reply:
    """Runtime entry point (the checker): ``APPROVED`` when ruff check and ruff format find nothing."""
    sources = [source for source in sources_of(call) if source.is_python]
    if not sources:
        return no_code_reply()
    ruff = find_ruff()
    if ruff is None:
        return Reply(state="failed", text=UNAVAILABLE_TEXT)
    await emit.progress(f"{CHECK_AGENT}: checking {count(len(sources), 'file')} with ruff")
    findings: list[Finding] = []
    fixable = 0
    try:
        for source in sources:
            found, can_fix = await check_source(ruff, source)
            findings += found
            fixable += can_fix
    except RuffError as exc:
        return Reply(state="failed", text=f"The lint checker could not run ruff: {exc}")
    clean = not findings
    verdict = "clean" if clean else f"{count(len(findings), 'finding')}, {fixable} fixable"
    await emit.progress(f"{CHECK_AGENT}: {verdict}")
    notes = [] if clean else [f"{fixable} fixable by ruff" if fixable else "none of them fixable by ruff"]
    extra = {"clean": clean, "fixable": fixable}
    reply = build_reply(CHECK_AGENT, "Lint check", findings, artifact_name="lint-check", notes=notes, extra=extra)
    if clean:
        return dataclasses.replace(reply, text=f"APPROVED: ruff finds nothing to fix in {count(len(sources), 'file')}")
    return reply
