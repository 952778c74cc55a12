"""An MCP tool's question to its caller (an elicitation) as A2A input-required, and the answer back.

Since MCP 2026-07-28 a tool asks by returning ``InputRequiredResult`` (``input_requests`` and an
opaque ``request_state``) instead of finishing; the caller answers by calling the tool again with
``input_responses`` and that state. The ``mcp`` runtime turns one form elicitation into an
input-required task (the elicitation's message as the status text, its requested schema as the
``elicitation`` data artifact) and the caller's follow-up on the task into the answer: a data part
(or, when the schema has one field, text for it) accepts with that content; the text ``decline``
or ``cancel`` is that action. Any other input request (sampling, roots, URL elicitation) is
refused with the reason: the gateway cannot answer it for a caller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema
import mcp_types as types

ACTIONS = ("decline", "cancel")
_TRUE = {"yes", "y", "true", "ok", "accept"}
_FALSE = {"no", "n", "false"}


class UnanswerableError(Exception):
    """An input request the gateway cannot turn into a question for the A2A caller."""


@dataclass(frozen=True)
class Question:
    """A tool's pending elicitation: what to call again, and with what state, once the caller answers."""

    arguments: dict[str, Any]
    key: str
    params: types.ElicitRequestFormParams
    request_state: str | None


def question_of(result: types.InputRequiredResult, arguments: dict[str, Any]) -> Question:
    """The one form elicitation ``result`` asks; ``UnanswerableError`` for anything else."""
    requests = result.input_requests or {}
    if len(requests) != 1:
        raise UnanswerableError(f"the tool asks {len(requests)} questions at once; the gateway relays one")
    ((key, request),) = requests.items()
    if not isinstance(request, types.ElicitRequest) or not isinstance(request.params, types.ElicitRequestFormParams):
        mode = " (url mode)" if isinstance(request, types.ElicitRequest) else ""
        raise UnanswerableError(
            f"the tool asks for {request.method}{mode}, which the gateway cannot answer for its caller"
        )
    return Question(arguments=arguments, key=key, params=request.params, request_state=result.request_state)


def answer_of(question: Question, text: str, data: tuple[dict[str, Any], ...]) -> types.ElicitResult:
    """The caller's follow-up as the elicitation's result; ``ValueError`` saying what to send instead."""
    word = text.strip().lower()
    if not data and word in ACTIONS:
        return types.ElicitResult(action=word)  # type: ignore[arg-type]
    schema = question.params.requested_schema
    content = dict(data[0]) if data else _text_content(schema, text)
    problems = list(jsonschema.Draft202012Validator(schema).iter_errors(content))
    if problems:
        raise ValueError(
            f"{problems[0].message}; answer with a JSON object matching {json.dumps(schema)}, or decline or cancel"
        )
    return types.ElicitResult(action="accept", content=content)


def _text_content(schema: dict[str, Any], text: str) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties") or {}
    if len(properties) != 1:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        return value if isinstance(value, dict) else {}
    ((name, spec),) = properties.items()
    word = text.strip()
    kind = spec.get("type")
    if kind == "boolean" and word.lower() in _TRUE | _FALSE:
        return {name: word.lower() in _TRUE}
    if kind in ("integer", "number"):
        try:
            return {name: int(word) if kind == "integer" else float(word)}
        except ValueError:
            return {name: word}
    return {name: word}
