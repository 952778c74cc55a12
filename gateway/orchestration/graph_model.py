"""The graph pattern's options: typed state, nodes, edges with conditions, and what is refused at load.

Conditions are data, never code: ``{field, op, value}`` on a field of the state (a dotted path),
combined with ``{all: [...]}``, ``{any: [...]}`` and ``{not: ...}``, or the same written as a short
expression, ``verdict == 'bad' and attempts < 3``, parsed into that form (``conditions``). Operators: ``eq``, ``ne``,
``lt``, ``le``, ``gt``, ``ge`` (numbers), ``in``, ``not-in`` (the field's value among a list),
``contains`` (a list field holds the value; never a substring), ``exists``, ``missing``. A field
that is absent satisfies only ``missing`` (and ``not`` of anything else); values of different
types are never equal (``true`` is not ``1``).

Refused when the file loads, each with the reason: a state schema that is not a JSON Schema, or
that has a ``$ref`` anywhere in it that does not resolve within it (remote references are not
fetched); an edge to or from an unknown node; a node no path from ``start`` reaches; a cycle whose
edges are all unconditional (it would never stop) or that has no edge leading out of it; a condition on a field
the state schema does not declare, or comparing it with a value of the wrong type.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal
from urllib.parse import quote

import jsonschema
import referencing
from jsonschema.protocols import Validator
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, model_validator
from referencing.exceptions import Unresolvable

from gateway.orchestration.api import PatternOptions
from gateway.orchestration.conditions import parse
from gateway.spec import NAME_PATTERN

END = "end"
"""The target of an edge that ends its branch."""
Op = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not-in", "contains", "exists", "missing"]
ORDERED = frozenset({"lt", "le", "gt", "ge"})
FIELD_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
NodeName = Annotated[str, Field(pattern=NAME_PATTERN)]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Compare(_Data):
    """``field op value`` on the state."""

    field: str = Field(pattern=FIELD_PATTERN, description="a dotted path into the state, e.g. review.score")
    op: Op = "eq"
    value: Any = None


class AllOf(_Data):
    """Every condition holds."""

    all: list[When] = Field(min_length=1)


class AnyOf(_Data):
    """At least one condition holds."""

    any: list[When] = Field(min_length=1)


class Not(_Data):
    """The condition does not hold."""

    not_: When = Field(alias="not")


When = Compare | AllOf | AnyOf | Not
for _model in (AllOf, AnyOf, Not):
    _model.model_rebuild()


def _from_text(value: Any) -> Any:
    return parse(value) if isinstance(value, str) else value


def also_text(schema: dict[str, Any]) -> None:
    text = {"type": "string", "description": "the condition as an expression, e.g. verdict == 'bad' and attempts < 3"}
    schema["anyOf"] = [*schema.get("anyOf", []), text]


Condition = Annotated[When, BeforeValidator(_from_text)]
"""A condition, structured or as an expression (parsed at load)."""


class Node(_Data):
    """One node: the participant (an agent or a nested workflow) it runs."""

    agent: NodeName
    text_to: str = Field(default="", description="a state field the node's text is written to (its data merges)")
    data_to: str = Field(
        default="", description="a state field the node's data is written to whole, instead of merged key by key"
    )
    join: bool = Field(default=False, description="wait for every branch that can still reach this node (fan-in)")


class Edge(_Data):
    """From a node to another (or ``end``), taken when ``when`` holds (always, without it)."""

    from_: NodeName = Field(alias="from")
    to: NodeName
    when: Condition | None = Field(default=None, json_schema_extra=also_text)


class GraphOptions(PatternOptions):
    """Typed state, nodes and edges (see the module docstring)."""

    state: dict[str, Any] = Field(default={"type": "object"}, description="JSON Schema of the run's state")
    start: NodeName = Field(description="the first node")
    nodes: dict[NodeName, Node] = Field(default={}, description="node -> {agent}; default: one node per participant")
    edges: list[Edge] = Field(min_length=1)
    _validator: Validator = PrivateAttr()

    @model_validator(mode="after")
    def _well_formed(self) -> GraphOptions:
        self._validator = state_validator(self.state)
        names = self.node_names()
        if names is not None:
            check_graph(self.start, names, self.edges)
        for index, edge in enumerate(self.edges):
            for compare in comparisons(edge.when):
                problem = compare_problem(compare, self.state, self._validator)
                if problem:
                    raise ValueError(f"edges[{index}] ({edge.from_} -> {edge.to}): {problem}")
        return self

    @property
    def validator(self) -> Validator:
        """The state schema's validator, built once when the options load and used for every state of every run."""
        return self._validator

    def node_names(self) -> list[str] | None:
        """The nodes' names (None when they are the participants, unknown until the plan)."""
        return list(self.nodes) if self.nodes else None

    def node(self, name: str) -> Node:
        """Node ``name`` (a participant of the same name when ``nodes`` is not given)."""
        return self.nodes.get(name) or Node(agent=name)


def state_validator(schema: dict[str, Any]) -> Validator:
    """The validator of a state schema; ``ValueError`` when it is not a JSON Schema or a ``$ref`` resolves nowhere.

    References resolve within the schema only (and to the JSON Schema meta-schemas): a remote one is not fetched,
    neither here nor on every state a run writes.
    """
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"state is not a valid JSON Schema: {exc.message}") from None
    validator = jsonschema.Draft202012Validator(schema, registry=referencing.Registry())
    nowhere = [
        f"{where} -> {ref!r}" for pointer, where, ref in _refs(schema, "", "") if _leads_nowhere(validator, pointer)
    ]
    if nowhere:
        raise ValueError(
            f"the state schema has a $ref that resolves nowhere (a run would fail on it): {', '.join(nowhere)}"
        )
    return validator


def _leads_nowhere(validator: Validator, pointer: str) -> bool:
    """Whether following the ``$ref`` of the subschema at ``pointer`` (and any it leads to) ends unresolved."""
    # Validating anything against {"$ref": "#<pointer>"} reaches the subschema as a run would (through any $id on
    # the way), then follows its own $ref, whatever the value.
    probe = validator.evolve(schema={"$ref": "#" + quote(pointer, safe="/~")})
    try:
        for _ in probe.iter_errors(None):
            pass
    except Unresolvable:
        return True
    return False


_ONE_SCHEMA = frozenset(
    {
        "additionalProperties", "contains", "contentSchema", "else", "if", "items", "not", "propertyNames", "then",
        "unevaluatedItems", "unevaluatedProperties",
    }
)  # fmt: skip
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAPS = frozenset({"$defs", "definitions", "dependentSchemas", "patternProperties", "properties"})


def _refs(schema: object, pointer: str, field: str | None) -> Iterator[tuple[str, str, str]]:
    """Every ``$ref`` of a schema (none of its ``default``/``enum``/``const`` values): the JSON pointer of the
    subschema holding it, what that is (a state field such as ``'review.score'``, else where in the schema),
    and the reference. ``field`` is the dotted field ``schema`` describes, None outside the state's fields."""
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        yield pointer, f"field {field!r}" if field else f"schema at {pointer or '(the root)'}", ref
    for key, value in schema.items():
        at = f"{pointer}/{_escaped(key)}"
        if key in _ONE_SCHEMA:
            yield from _refs(value, at, field)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            for index, item in enumerate(value):
                yield from _refs(item, f"{at}/{index}", field)
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            for name, item in value.items():
                inner = (f"{field}.{name}" if field else name) if key == "properties" and field is not None else None
                yield from _refs(item, f"{at}/{_escaped(name)}", inner)


def _escaped(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def check_participants(options: GraphOptions, participants: tuple[str, ...]) -> None:
    """At load: the nodes name participants, every participant has a node, and the graph is sound."""
    if not options.nodes:
        check_graph(options.start, list(participants), options.edges)
        return
    agents = {node.agent for node in options.nodes.values()}
    strangers = sorted(agents - set(participants))
    if strangers:
        raise ValueError(f"nodes run agents that are not participants: {', '.join(strangers)}")
    idle = [agent for agent in participants if agent not in agents]
    if idle:
        raise ValueError(f"participants no node runs: {', '.join(idle)}")


def check_graph(start: str, names: Sequence[str], edges: Sequence[Edge]) -> None:
    """Refuse unknown nodes, unreachable nodes, and cycles that are unbounded or have no way out."""
    known = set(names)
    if END in known:
        raise ValueError(f"no node may be called {END!r}: it is where edges end")
    if start not in known:
        raise ValueError(f"start {start!r} is not a node (nodes: {', '.join(names)})")
    for index, edge in enumerate(edges):
        for end, name in (("from", edge.from_), ("to", edge.to)):
            if name not in known and not (end == "to" and name == END):
                raise ValueError(f"edges[{index}].{end}: {name!r} is not a node (nodes: {', '.join(names)})")
    graph = {name: [e.to for e in edges if e.from_ == name and e.to != END] for name in names}
    reached = reachable(start, graph)
    unreachable = [name for name in names if name not in reached]
    if unreachable:
        raise ValueError(f"unreachable from {start!r}: {', '.join(unreachable)} (no path of edges leads there)")
    always = {name: [e.to for e in edges if e.from_ == name and e.to != END and e.when is None] for name in names}
    for cycle in _components(always):
        raise ValueError(
            f"unbounded cycle {' -> '.join([*cycle, cycle[0]])}: every edge on it is unconditional, so it never "
            "stops; put a condition on one of its edges"
        )
    for cycle in _components(graph):
        inside = set(cycle)
        if not any(e.from_ in inside and e.to not in inside for e in edges):
            raise ValueError(f"the cycle through {', '.join(cycle)} has no edge leading out of it, so it never ends")


def reachable(start: str, graph: Mapping[str, Sequence[str]]) -> set[str]:
    """``start`` and every node a path of edges (conditions aside) leads to from it."""
    seen, todo = {start}, [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _components(graph: Mapping[str, Sequence[str]]) -> Iterator[list[str]]:
    """The cycles of ``graph``: each strongly connected part with an edge inside it, nodes in graph order."""
    order = list(graph)
    reach = {name: reachable(name, graph) for name in order}
    done: set[str] = set()
    for name in order:
        if name in done:
            continue
        part = [other for other in order if other in reach[name] and name in reach[other]]
        done.update(part)
        if len(part) > 1 or name in graph[name]:
            yield part


def comparisons(when: When | None) -> Iterator[Compare]:
    """Every ``{field, op, value}`` in a condition."""
    if isinstance(when, Compare):
        yield when
    elif isinstance(when, AllOf | AnyOf):
        for inner in when.all if isinstance(when, AllOf) else when.any:
            yield from comparisons(inner)
    elif isinstance(when, Not):
        yield from comparisons(when.not_)


def field_schema(schema: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    """The schema of dotted ``path`` in an object schema; None when the schema does not declare it."""
    for part in path.split("."):
        properties = schema.get("properties")
        if not isinstance(properties, dict) or part not in properties:
            return None
        schema = properties[part] if isinstance(properties[part], dict) else {}
    return schema


def compare_problem(compare: Compare, state: Mapping[str, Any], validator: Validator | None = None) -> str:
    """Why a comparison does not fit the state schema (empty when it does), or can never hold on any state."""
    if compare.op in ORDERED and not _number(compare.value):
        return f"{compare.op} compares numbers, not {compare.value!r}"
    if compare.op in ("in", "not-in") and not isinstance(compare.value, list):
        return f"{compare.op} needs a list of values, not {compare.value!r}"
    declared = field_schema(state, compare.field)
    if declared is None:
        if "properties" not in state:
            return ""  # an untyped state: nothing more to check against
        return f"the state schema declares no field {compare.field!r}"
    if compare.op in ("exists", "missing") or compare.op in ORDERED:
        return ""
    values = compare.value if compare.op in ("in", "not-in") else [compare.value]
    if compare.op == "contains":
        if declared.get("type") != "array" and declared.keys() & {"type", "enum", "const"}:
            return f"contains tests a list field, and {compare.field!r} is not one"
        declared = declared.get("items", {}) if isinstance(declared.get("items"), dict) else {}
    # The field's schema checked within the whole state schema, so its $refs resolve against the root's $defs
    # (state_validator made sure every one of them does).
    root = validator or state_validator(dict(state))
    field_validator = root.evolve(schema=declared)
    for value in values:
        error = jsonschema.exceptions.best_match(field_validator.iter_errors(value))
        if error is not None:
            return f"{value!r} can never be a value of {compare.field!r}: {error.message}"
    return ""


_MISSING = object()


def lookup(state: Mapping[str, Any], path: str) -> Any:
    """The value at dotted ``path`` of the state, or ``_MISSING``."""
    value: Any = state
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _same(a: Any, b: Any) -> bool:
    if _number(a) and _number(b):
        return bool(a == b)  # 2 and 2.0 are the same number in JSON
    return type(a) is type(b) and bool(a == b)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(compare: Compare, state: Mapping[str, Any]) -> bool:
    value, op, expected = lookup(state, compare.field), compare.op, compare.value
    if op in ("exists", "missing"):
        return (value is _MISSING) == (op == "missing")
    if value is _MISSING:
        return False
    if op in ORDERED:
        if not (_number(value) and _number(expected)):
            return False
        left, right = float(value), float(expected)
        return {"lt": left < right, "le": left <= right, "gt": left > right, "ge": left >= right}[op]
    if op in ("in", "not-in"):
        found = isinstance(expected, list) and any(_same(value, item) for item in expected)
        return found == (op == "in")
    if op == "contains":
        return isinstance(value, list) and any(_same(item, expected) for item in value)
    return _same(value, expected) == (op == "eq")


def holds(when: When | None, state: Mapping[str, Any]) -> bool:
    """Whether condition ``when`` holds on ``state`` (no condition always holds)."""
    if when is None:
        return True
    if isinstance(when, Compare):
        return _compare(when, state)
    if isinstance(when, AllOf):
        return all(holds(inner, state) for inner in when.all)
    if isinstance(when, AnyOf):
        return any(holds(inner, state) for inner in when.any)
    return not holds(when.not_, state)
