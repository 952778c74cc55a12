from __future__ import annotations

import ast
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from gateway.agents import complexity
from gateway.agents.complexity import Thresholds, severity_for
from gateway.agents.complexity_metrics import complexity_of
from gateway.runtime import AgentCall, FileInput

if TYPE_CHECKING:
    from conftest import RecordingEmitter


def snippet(code: str, **metadata: Any) -> AgentCall:
    return AgentCall(text="", files=(FileInput("app.py", text=code),), metadata=metadata)


def body_of(lines: str) -> str:
    """A function ``f`` whose body is ``lines`` (each line indented by four more spaces)."""
    return "def f(a, b, c):\n" + "".join(f"    {line}\n" for line in lines.splitlines())


def nested_ifs(depth: int) -> str:
    return (
        "def f(a):\n"
        + "".join(f"{'    ' * (level + 1)}if a > {level}:\n" for level in range(depth))
        + ("    " * (depth + 1) + "return a\n")
    )


async def test_planted_complex_function_is_found(
    planted_call: AgentCall, planted_line: Callable[[str], int], emit: RecordingEmitter
) -> None:
    reply = await complexity.run(planted_call, emit)

    assert reply.state == "completed"
    assert reply.artifact_name == "complexity-findings"
    assert isinstance(reply.data, dict)
    line = planted_line("def classify(")
    assert [(f["line"], f["rule"], f["severity"]) for f in reply.data["findings"]] == [
        (line, "CPX001 high-complexity", "low")
    ]
    assert "`classify` has cyclomatic complexity 14 (limit 10)" in reply.data["findings"][0]["message"]
    functions = {function["name"]: function for function in reply.data["functions"]}
    assert set(functions) == {"evaluate", "archive", "classify", "report"}
    assert functions["classify"]["complexity"] == 14
    assert functions["classify"]["line"] == line
    assert emit.progress_messages == ["complexity: measuring 1 file", "complexity: 4 functions, 1 over the limits"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("return a", 1),
        ("if a:\n    return b\nelif b:\n    return c\nelse:\n    return a", 3),
        ("return a and b and c or a", 4),
        ("return [x for x in a if x if b]", 4),
        ("return {k: v for k in a for v in b}", 3),
        ("return a if b else c", 2),
        ("for x in a:\n    pass\nelse:\n    pass\nwhile b:\n    break", 3),
        ("try:\n    pass\nexcept KeyError:\n    pass\nexcept ValueError:\n    pass\nelse:\n    pass", 3),
        ("try:\n    pass\nfinally:\n    pass", 1),
        ("assert a\nwith b:\n    pass", 1),
        ("match a:\n    case 1:\n        pass\n    case [x] if x:\n        pass\n    case _:\n        pass", 3),
        ("def inner():\n    if a:\n        pass\nreturn inner", 1),
        ("return lambda x: x if x else a", 2),
    ],
)
def test_complexity_counts_each_decision(body: str, expected: int) -> None:
    function = ast.parse(body_of(body)).body[0]
    assert isinstance(function, ast.FunctionDef)

    assert complexity_of(function) == expected


async def test_thresholds_come_from_metadata(planted_call: AgentCall, emit: RecordingEmitter) -> None:
    call = AgentCall(text="", files=planted_call.files, metadata={"thresholds": {"max_complexity": 20, "max_lines": 5}})

    reply = await complexity.run(call, emit)

    assert isinstance(reply.data, dict)
    assert [(f["rule"], f["severity"]) for f in reply.data["findings"]] == [("CPX002 long-function", "high")]
    assert "`classify` has 20 code lines (limit 5)" in reply.data["findings"][0]["message"]
    assert reply.data["thresholds"] == {"max_complexity": 20, "max_lines": 5, "max_depth": 4}


async def test_deep_nesting_points_at_the_deepest_block(emit: RecordingEmitter) -> None:
    reply = await complexity.run(snippet(nested_ifs(5)), emit)

    assert isinstance(reply.data, dict)
    assert [(f["line"], f["rule"]) for f in reply.data["findings"]] == [(6, "CPX003 deep-nesting")]
    assert reply.data["functions"][0]["max_depth"] == 5


async def test_elif_chains_are_not_nesting(emit: RecordingEmitter) -> None:
    chain = "if a == 0:\n    pass\n" + "".join(f"elif a == {n}:\n    pass\n" for n in range(1, 8))

    reply = await complexity.run(snippet(body_of(chain), thresholds={"max_complexity": 50}), emit)

    assert isinstance(reply.data, dict)
    assert reply.data["findings"] == []
    assert reply.data["functions"][0]["max_depth"] == 1


@pytest.mark.parametrize(
    ("value", "severity"), [(11, "low"), (15, "low"), (16, "medium"), (20, "medium"), (21, "high")]
)
def test_severity_grows_with_the_excess(value: int, severity: str) -> None:
    assert severity_for(value, 10) == severity


async def test_far_over_the_limit_is_high(emit: RecordingEmitter) -> None:
    reply = await complexity.run(snippet(nested_ifs(9)), emit)

    assert isinstance(reply.data, dict)
    assert [(f["rule"], f["severity"]) for f in reply.data["findings"]] == [("CPX003 deep-nesting", "high")]


@pytest.mark.parametrize(
    "thresholds",
    [{"max_complexity": 0}, {"max_depth": "4"}, {"max_lines": True}, {"max_branches": 3}, ["max_depth", 3]],
)
async def test_invalid_thresholds_are_rejected(thresholds: object, emit: RecordingEmitter) -> None:
    reply = await complexity.run(snippet("x = 1\n", thresholds=thresholds), emit)

    assert reply.state == "rejected"
    assert reply.text.startswith("Invalid thresholds:")


def test_default_thresholds() -> None:
    assert Thresholds.from_metadata({}) == Thresholds(max_complexity=10, max_lines=50, max_depth=4)


async def test_unparseable_file_is_reported_not_raised(emit: RecordingEmitter) -> None:
    reply = await complexity.run(snippet("x = 1\nif True\n    pass\n"), emit)

    assert reply.state == "completed"
    assert isinstance(reply.data, dict)
    assert [(f["line"], f["rule"], f["severity"]) for f in reply.data["findings"]] == [
        (2, "CPX000 parse-error", "info")
    ]
    assert reply.data["functions"] == []


async def test_message_without_code_asks_for_code(emit: RecordingEmitter) -> None:
    reply = await complexity.run(AgentCall(text=""), emit)

    assert reply.state == "input-required"
