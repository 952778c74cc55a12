"""The README's triggers, cache and admission example is a valid part of an agent file."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gateway.spec import AgentSpec, NatsTriggerSpec, ScheduleTriggerSpec

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_example_validates_as_an_agent_file() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Triggers, result cache, admission control")
    [block] = re.findall(r"```yaml\n(.*?)```", text[start : text.index("\n## ", start + 1)], flags=re.S)
    card = {
        "format": 1,
        "name": "shout",
        "description": "Repeats what it is sent, in capitals.",
        "skills": [{"id": "shout", "name": "Shout", "description": "The text in capitals.", "tags": ["text"]}],
        "runtime": {"kind": "python", "entrypoint": "shout:run"},
    }

    spec = AgentSpec.model_validate({**card, **yaml.safe_load(block)})

    assert [t.kind for t in spec.triggers] == ["webhook", "push", "nats", "schedule"]
    assert isinstance(spec.triggers[2], NatsTriggerSpec) and spec.triggers[2].dead_letter_subject == "orders.dead"
    assert isinstance(spec.triggers[3], ScheduleTriggerSpec) and spec.triggers[3].at == "02:30"
    assert spec.cache is not None and spec.cache.ttl_s == 300
    assert spec.admission is not None and spec.admission.per_caller_concurrent == 2
