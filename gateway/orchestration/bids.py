"""Bids of the contract-net pattern: what a bidder answers, what is derived for one that cannot bid, and scores.

A bidder answers a call for bids with a data part ``{"bid": {capability, cost, load, confidence}}``:

- ``capability``: how well it can do the task, 0..1, or the list of capabilities it offers
  (scored as the share of the announced ``required_capabilities`` it covers);
- ``cost``: what it would spend (>= 0, in the run's budget unit);
- ``load``: how busy it is, 0..1 (default 0); ``confidence``: 0..1 (default 0.5).

``{"bid": null}`` (or a rejected task) declines. A bid that does not match this shape is refused
as malformed, with pydantic's reason. An answer with no ``bid`` at all is from an agent that does
not speak contract-net: its bid is derived from its card (the share of the required capabilities,
or of the request's terms, its skills, tags and examples cover; ``matching``) and from how its
calls have gone: confidence starts at 0.5 and halves for each contract it failed in this run and
again when its circuit breaker is half-open; an agent whose circuit is open gets no derived bid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.orchestration.api import AgentInfo, StepResult
from gateway.orchestration.matching import card_weights, prose, score, terms

BidStatus = Literal["bid", "derived", "declined", "late", "malformed", "failed", "ineligible"]


class Bid(BaseModel):
    """A structured bid, as a bidder returns it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # an infinite cost made every score NaN

    capability: Annotated[float, Field(ge=0, le=1)] | list[str] = Field(description="0..1, or the capabilities offered")
    cost: float = Field(ge=0)
    load: float = Field(default=0.0, ge=0, le=1)
    confidence: float = Field(default=0.5, ge=0, le=1)


class Weights(BaseModel):
    """How much each part of a bid counts in its score (cost is scaled by the round's highest cost)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    capability: float = Field(default=1.0, ge=0)
    confidence: float = Field(default=1.0, ge=0)
    cost: float = Field(default=0.5, ge=0)
    load: float = Field(default=0.5, ge=0)


@dataclass
class BidReport:
    """One bidder's part in a round: its status, its bid, its score, and the reason when it has no score."""

    agent: str
    status: BidStatus
    bid: Bid | None = None
    capability: float = 0.0
    score: float | None = None
    reason: str = ""

    @property
    def eligible(self) -> bool:
        """Whether the bid may win an award."""
        return self.status in ("bid", "derived") and self.score is not None

    def to_json(self) -> dict[str, Any]:
        """The report as the run's data shows it."""
        value: dict[str, Any] = {"agent": self.agent, "status": self.status}  # its child task: the steps artifact
        if self.bid is not None:
            value["bid"] = self.bid.model_dump()
            value["capability"] = round(self.capability, 4)
        if self.score is not None:
            value["score"] = round(self.score, 4)
        if self.reason:
            value["reason"] = self.reason
        return value


def coverage(offered: Sequence[str], required: Sequence[str]) -> float:
    """The share of ``required`` capabilities among ``offered`` (compared as terms); 1 when none is required."""
    if not required:
        return 1.0
    have = {term for item in offered for term in terms(item)}
    return sum(1 for need in required if set(terms(need)) <= have) / len(required)


def capability_of(bid: Bid, required: Sequence[str]) -> float:
    """A bid's capability, 0..1."""
    if isinstance(bid.capability, list):
        return coverage(bid.capability, required)
    return min(max(bid.capability, 0.0), 1.0)


def read_bid(result: StepResult, required: Sequence[str]) -> BidReport:
    """What a bidder's finished step says (``declined``, ``malformed``, ``bid``, or None data: derive)."""
    report = BidReport(result.agent, "failed")
    if result.state == "rejected":
        report.status, report.reason = "declined", result.text or "rejected the call for bids"
        return report
    if not result.ok:
        report.reason = result.error or result.text or result.state
        return report
    data = result.data if isinstance(result.data, dict) else {}
    if "bid" not in data:
        report.status = "derived"
        return report
    if data["bid"] is None or data["bid"] is False:
        report.status, report.reason = "declined", result.text or "declined"
        return report
    try:
        bid = Bid.model_validate(data["bid"])
    except ValidationError as exc:
        why = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'bid'}: {e['msg']}" for e in exc.errors())
        report.status, report.reason = "malformed", f"malformed bid: {why}"
        return report
    report.status, report.bid, report.capability = "bid", bid, capability_of(bid, required)
    return report


def derive(info: AgentInfo, request: str, required: Sequence[str], cost: float, failures: int) -> Bid | None:
    """The bid of an agent that cannot bid, from its card and how its calls went; None when its circuit is open."""
    if info.circuit == "open":
        return None
    if required:
        weights = card_weights(info)
        capability = sum(1 for need in required if all(t in weights for t in terms(need))) / len(required)
    else:
        asked = set(terms(prose(request)))
        capability = len(score(request, info).terms) / len(asked) if asked else 0.0
    doubt = failures + (1 if info.circuit == "half-open" else 0)
    return Bid(capability=min(capability, 1.0), cost=cost, load=0.0, confidence=0.5 / 2**doubt)


def rank_bids(reports: Sequence[BidReport], weights: Weights, min_capability: float, max_cost: float | None) -> None:
    """Score every valid bid (or mark it ineligible, with the reason); scores compare within the round."""
    valid = [r for r in reports if r.bid is not None and r.status in ("bid", "derived")]
    top_cost = max((r.bid.cost for r in valid if r.bid is not None), default=0.0) or 1.0
    for report in valid:
        bid = report.bid
        assert bid is not None
        if report.capability < min_capability:
            report.status, report.reason = "ineligible", f"capability {report.capability:g} < {min_capability:g}"
            continue
        if max_cost is not None and bid.cost > max_cost:
            report.status, report.reason = "ineligible", f"cost {bid.cost:g} > {max_cost:g}"
            continue
        report.score = (
            weights.capability * report.capability
            + weights.confidence * bid.confidence
            - weights.cost * bid.cost / top_cost
            - weights.load * bid.load
        )


def winners(reports: Sequence[BidReport], count: int, order: Mapping[str, int]) -> list[BidReport]:
    """The ``count`` best eligible bids; ties go to the earlier participant."""
    eligible = [r for r in reports if r.eligible]
    return sorted(eligible, key=lambda r: (-(r.score or 0.0), order[r.agent]))[:count]
