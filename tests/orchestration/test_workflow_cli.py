"""``switchboard run``: a streaming A2A send to a workflow, with each step's progress live, then the result."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gateway.testing import RunningGateway

REPO = Path(__file__).resolve().parents[2]
PLANTED = REPO / "tests" / "samples" / "planted.py"


async def switchboard(*args: str) -> tuple[int, str, str]:
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, cwd=REPO, stdout=pipe, stderr=pipe
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_run_streams_each_step_and_prints_the_result(gateway: RunningGateway) -> None:
    code, out, _ = await switchboard("run", "code-review", "Review this", "--file", str(PLANTED), "--url", gateway.url)

    assert code == 0, out
    lines = out.splitlines()
    # A status update may carry several progress lines (the engine batches them); the first has the state.
    progress = {line.removeprefix("[working] ") for line in lines}
    assert "step 1/4 · security-reviewer: scanning 1 file" in progress
    assert "step 4/4 · review-lead: started" in progress
    assert lines.index("[artifact] step-3-style-reviewer") < lines.index("[artifact] result")
    assert "== completed ==" in lines and out.count("## Code review report") == 1
    assert "-- artifact: step-1-security-reviewer --" not in lines, "only the run's result is printed in full"
    assert "SEC001 hardcoded-secret" in out


async def test_run_of_an_unknown_workflow_says_so(gateway: RunningGateway) -> None:
    code, _, err = await switchboard("run", "no-such-flow", "x", "--url", gateway.url)

    assert code == 2 and f"no agent at {gateway.url}/agents/no-such-flow (HTTP 404)" in err
