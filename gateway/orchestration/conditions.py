"""Conditions written as short expressions, parsed (never evaluated as code) into the structured form.

``verdict == 'bad' and attempts < 3`` is the same condition as ``{all: [{field: verdict, op: eq,
value: bad}, {field: attempts, op: lt, value: 3}]}`` (``graph_model``), and is checked the same
way when the file loads. The grammar::

    expr    := term ("or" term)*
    term    := factor ("and" factor)*
    factor  := "not" factor | "(" expr ")" | field op value | field "exists" | field "missing"
    op      := == | != | < | <= | > | >= | in | not in | contains
    value   := 'text' | "text" | number | true | false | null | [value, ...]

A field is a dotted path into the state (``review.score``). Anything else is refused with the
position it was found at.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_CHARS = 500
MAX_DEPTH = 16
_TOKEN = re.compile(
    r"""\s*(?:
    (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
    |(?P<string>'[^'\\]*'|"[^"\\]*")
    |(?P<symbol>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""",
    re.VERBOSE,
)
_OPS = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "in": "in", "contains": "contains"}
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
_KEYWORDS = frozenset({"and", "or", "not", "in", "contains", "exists", "missing", *_LITERALS})


class ConditionSyntaxError(ValueError):
    """A condition expression that does not parse; the message names the position."""


def tokens(text: str) -> list[tuple[str, str, int]]:
    """``(kind, text, position)`` of each token of ``text``."""
    found: list[tuple[str, str, int]] = []
    position = 0
    while position < len(text):
        if not text[position:].strip():
            break
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            start = len(text) - len(text[position:].lstrip())
            raise ConditionSyntaxError(f"unexpected {text[start : start + 10]!r} at {start}")
        found.append((match.lastgroup, match.group(match.lastgroup), match.start(match.lastgroup)))
        position = match.end()
    return found


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = tokens(text)
        self.index = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.items[self.index] if self.index < len(self.items) else None

    def take(self, *texts: str) -> str | None:
        item = self.peek()
        if item is not None and item[0] in ("word", "symbol") and item[1] in texts:
            self.index += 1
            return item[1]
        return None

    def fail(self, wanted: str) -> ConditionSyntaxError:
        item = self.peek()
        where = f"{item[1]!r} at {item[2]}" if item else "the end"
        return ConditionSyntaxError(f"expected {wanted}, found {where}")

    def expr(self) -> dict[str, Any]:
        parts = [self.term()]
        while self.take("or"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else {"any": parts}

    def term(self) -> dict[str, Any]:
        parts = [self.factor()]
        while self.take("and"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else {"all": parts}

    def factor(self) -> dict[str, Any]:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConditionSyntaxError(f"nested more than {MAX_DEPTH} deep")
        try:
            if self.take("not"):
                return {"not": self.factor()}
            if self.take("("):
                inner = self.expr()
                if not self.take(")"):
                    raise self.fail("')'")
                return inner
            return self.compare()
        finally:
            self.depth -= 1

    def compare(self) -> dict[str, Any]:
        item = self.peek()
        if item is None or item[0] != "word" or item[1] in _KEYWORDS:
            raise self.fail("a field")
        self.index += 1
        field = item[1]
        if self.take("exists", "missing") is not None:
            return {"field": field, "op": self.items[self.index - 1][1]}
        if self.take("not"):
            if not self.take("in"):
                raise self.fail("'in' after 'not'")
            return {"field": field, "op": "not-in", "value": self.value()}
        op = self.take(*_OPS)
        if op is None:
            raise self.fail("an operator (== != < <= > >= in, not in, contains, exists, missing)")
        return {"field": field, "op": _OPS[op], "value": self.value()}

    def value(self) -> Any:
        item = self.peek()
        if item is None:
            raise self.fail("a value")
        kind, text, _ = item
        if kind == "symbol" and text == "[":
            self.index += 1
            values: list[Any] = []
            while not self.take("]"):
                if values and not self.take(","):
                    raise self.fail("',' or ']'")
                values.append(self.value())
            return values
        self.index += 1
        if kind == "number":
            return json.loads(text)
        if kind == "string":
            return text[1:-1]
        if kind == "word" and text in _LITERALS:
            return _LITERALS[text]
        self.index -= 1
        raise self.fail("a value ('text', a number, true, false, null or a [list])")


def parse(text: str) -> dict[str, Any]:
    """The structured condition ``text`` says; ``ConditionSyntaxError`` names what is wrong and where."""
    if len(text) > MAX_CHARS:
        raise ConditionSyntaxError(f"longer than {MAX_CHARS} characters")
    parser = _Parser(text)
    if not parser.items:
        raise ConditionSyntaxError("empty condition")
    condition = parser.expr()
    if parser.peek() is not None:
        raise parser.fail("'and', 'or' or the end")
    return condition
