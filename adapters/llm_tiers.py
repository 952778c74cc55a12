"""Cost tiers for ``llm`` agents: a cheap model answers first, a stronger one when that answer will not do.

An agent file's ``runtime.escalation`` names the stronger ``model`` and ``when``: which signs of a poor
answer it takes over (all three by default):

- ``refusal``: the model refused (a streamed ``refusal`` delta, or ``finish_reason: content_filter``);
- ``invalid``: the answer does not satisfy the file's ``output_schema`` (it is not JSON, or the JSON
  breaks the schema, named by ``jsonschema``'s best match);
- ``low-confidence``: the answer's confidence is below ``min_confidence``: a number ``confidence``
  (0..1) at the top of a JSON answer when it has one, else the mean token probability of the answer
  from the endpoint's ``logprobs`` (asked for when this sign is on). An answer with neither is not
  judged on confidence.

The stronger model answers the same call from the start (tools included); both calls' usage counts
for the run's budgets, each priced by its own tier. With no escalation, an answer failing the
``output_schema`` fails the task with the reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import jsonschema

from gateway.spec import EscalationSpec


@dataclass(frozen=True)
class Judged:
    """What a tier's answer showed: its text, whether the model refused, and how sure it was (None: unknown)."""

    text: str
    refused: bool = False
    confidence: float | None = None


def confidence(text: str, logprobs: list[float]) -> float | None:
    """A top-level ``confidence`` of a JSON answer, else the mean token probability, else None."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    stated = value.get("confidence") if isinstance(value, dict) else None
    if isinstance(stated, int | float) and not isinstance(stated, bool) and 0 <= stated <= 1:
        return float(stated)
    if logprobs:
        return math.exp(sum(logprobs) / len(logprobs))
    return None


def schema_problem(schema: dict[str, Any] | None, text: str) -> str:
    """Why ``text`` does not satisfy ``schema`` (empty when it does, or when there is no schema)."""
    if schema is None:
        return ""
    try:
        value = json.loads(text)
    except ValueError:
        return "the answer is not JSON"
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is None:
        return ""
    where = "/".join(str(step) for step in error.absolute_path) or "the answer"
    return f"{where}: {error.message}"


def why_escalate(policy: EscalationSpec, judged: Judged, schema: dict[str, Any] | None) -> str:
    """Why the stronger model takes over from this answer, or empty when it stands."""
    if "refusal" in policy.when and judged.refused:
        return "the model refused"
    if "invalid" in policy.when:
        problem = schema_problem(schema, judged.text)
        if problem:
            return f"the answer does not match output_schema ({problem})"
    sure = judged.confidence
    if "low-confidence" in policy.when and sure is not None and sure < policy.min_confidence:
        return f"confidence {sure:.2f} is below {policy.min_confidence:g}"
    return ""
