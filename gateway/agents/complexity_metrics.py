"""Per-function metrics from a parsed module: complexity, code lines, nesting depth.

The counting rules are documented in ``gateway.agents.complexity``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
SIMPLE_DECISIONS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.IfExp, ast.ExceptHandler)
LOOPS = (ast.For, ast.AsyncFor, ast.While)
WITHS = (ast.With, ast.AsyncWith)
TRIES = (ast.Try, ast.TryStar)


@dataclass(frozen=True)
class FunctionMetrics:
    """What was measured for one function; ``depth_line`` is where its deepest block opens."""

    name: str
    file: str
    line: int
    end_line: int
    complexity: int
    lines: int
    max_depth: int
    depth_line: int

    def to_dict(self) -> dict[str, Any]:
        """The metrics as plain JSON-ready values."""
        return asdict(self)


def measure_module(tree: ast.Module, file: str, text: str) -> list[FunctionMetrics]:
    """Metrics for every function and method in ``tree``, in source order."""
    source_lines = text.splitlines()
    return [_measure(node, name, file, source_lines) for node, name in _functions(tree.body, "")]


def complexity_of(function: FunctionNode) -> int:
    """McCabe complexity of one function, not counting the functions nested in it."""
    return 1 + sum(_decisions(node) for node in _own_nodes(function))


def nesting_of(function: FunctionNode) -> tuple[int, int]:
    """The deepest block nesting in the function's body and the line that opens it (0, def line if flat)."""
    return _deepest(function.body, 0, function.lineno)


def code_lines(source_lines: list[str], start: int, end: int) -> int:
    """Non-blank, non-comment lines between 1-based lines ``start`` and ``end`` inclusive."""
    span = source_lines[start - 1 : end]
    return sum(1 for line in span if line.strip() and not line.lstrip().startswith("#"))


def _measure(node: FunctionNode, name: str, file: str, source_lines: list[str]) -> FunctionMetrics:
    end = node.end_lineno or node.lineno
    depth, depth_line = nesting_of(node)
    lines = code_lines(source_lines, node.lineno, end)
    return FunctionMetrics(name, file, node.lineno, end, complexity_of(node), lines, depth, depth_line)


def _functions(body: list[ast.stmt], prefix: str) -> Iterator[tuple[FunctionNode, str]]:
    for node in body:
        for child in _scopes_in(node):
            name = f"{prefix}{child.name}"
            if isinstance(child, ast.ClassDef):
                yield from _functions(child.body, f"{name}.")
            else:
                yield child, name
                yield from _functions(child.body, f"{name}.")


def _scopes_in(node: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]:
    # Functions can hide inside if/try/with blocks (e.g. platform-specific definitions).
    if isinstance(node, SCOPES):
        yield node
        return
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
            yield from _scopes_in(child)


def _own_nodes(function: FunctionNode) -> Iterator[ast.AST]:
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, SCOPES):
            stack.extend(ast.iter_child_nodes(node))


def _decisions(node: ast.AST) -> int:
    if isinstance(node, SIMPLE_DECISIONS):
        return 1
    if isinstance(node, ast.BoolOp):
        return len(node.values) - 1
    if isinstance(node, ast.comprehension):
        return 1 + len(node.ifs)
    if isinstance(node, ast.match_case):
        return 0 if _is_wildcard(node) else 1
    return 0


def _is_wildcard(case: ast.match_case) -> bool:
    pattern = case.pattern
    return isinstance(pattern, ast.MatchAs) and pattern.pattern is None and case.guard is None


def _deepest(body: list[ast.stmt], depth: int, line: int) -> tuple[int, int]:
    best = (depth, line)
    for statement in body:
        for block, level in _blocks(statement, depth):
            found = _deepest(block, level, statement.lineno if level > depth else line)
            best = max(best, found, key=lambda pair: pair[0])
    return best


def _blocks(node: ast.stmt, depth: int) -> list[tuple[list[ast.stmt], int]]:
    for kinds, blocks in BLOCK_RULES:
        if isinstance(node, kinds):
            return blocks(node, depth)
    return []


def _if_blocks(node: Any, depth: int) -> list[tuple[list[ast.stmt], int]]:
    orelse = node.orelse
    # An elif is an If alone in orelse, starting at the same column as its if.
    is_elif = len(orelse) == 1 and isinstance(orelse[0], ast.If) and orelse[0].col_offset == node.col_offset
    return [(node.body, depth + 1), (orelse, depth if is_elif else depth + 1)]


BLOCK_RULES: tuple[tuple[type | tuple[type, ...], Callable[[Any, int], list[tuple[list[ast.stmt], int]]]], ...] = (
    (ast.If, _if_blocks),
    (LOOPS, lambda node, depth: [(node.body, depth + 1), (node.orelse, depth + 1)]),
    (WITHS, lambda node, depth: [(node.body, depth + 1)]),
    (TRIES, lambda node, depth: [(block, depth + 1) for block in _try_blocks(node)]),
    (ast.Match, lambda node, depth: [(case.body, depth + 1) for case in node.cases]),
)


def _try_blocks(node: ast.Try | ast.TryStar) -> list[list[ast.stmt]]:
    return [node.body, *(handler.body for handler in node.handlers), node.orelse, node.finalbody]
