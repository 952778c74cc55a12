"""The README's "Bring your agent" examples: every runtime block is a valid agent file, and the python one answers."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from a2a.types.a2a_pb2 import TaskState

from gateway.spec import AgentSpec
from gateway.testing import running_gateway
from tests.bindings.a2a_clients import BINDINGS, a2a_client, artifact_texts, send
from tests.conftest import make_settings

README = Path(__file__).resolve().parents[2] / "README.md"
STREAMING = next(b for b in BINDINGS if b.id == "jsonrpc-sse")


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Bring your agent")
    return text[start : text.index("\n## ", start + 1)]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(), flags=re.S)


def card() -> dict[str, Any]:
    [first] = [b for b in blocks("yaml") if b.startswith("# agents/shout.yaml")]
    loaded = yaml.safe_load(first)
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize(
    "block", [b for b in blocks("yaml") if "runtime:" in b], ids=lambda b: b.split("kind: ")[1][:14]
)
def test_each_runtime_example_is_a_valid_agent_file(block: str) -> None:
    loaded = yaml.safe_load(block)
    spec = AgentSpec.model_validate({**card(), "runtime": loaded["runtime"]})
    assert spec.runtime.kind in block


async def test_the_python_example_answers_from_beside_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    [source] = [b for b in blocks("python") if b.startswith("# agents/shout.py")]
    (agents / "shout.py").write_text(source, encoding="utf-8")
    (agents / "shout.yaml").write_text(yaml.safe_dump(card()), encoding="utf-8")
    # Another test's agents folder has a shout module too, and its folder is on sys.path by now: one
    # process serves one agents folder, where a module name means one file.
    monkeypatch.delitem(sys.modules, "shout", raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not (Path(p) / "shout.py").is_file()])
    async with (
        running_gateway(make_settings(tmp_path, agents=agents, mcp_tools=["*"])) as gateway,
        a2a_client(gateway.agent_url("shout"), STREAMING) as client,
    ):
        task, _ = await send(client, "hello")
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert artifact_texts(task) == ["HELLO"]
