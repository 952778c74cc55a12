"""A run's blackboard: shared state with a version per write, per-key versions, and an append-only history.

Writes are optimistic: a contributor reads the board at some version and sends back
``{"write": {"base_version": N, "set": {key: value}, "delete": [key]}}``. The write is applied
(the board's version goes up by one, and each key it touches records that version) unless a key
it touches was changed after version ``N``: then it is refused as a conflict, naming the key, the
version and who changed it, and nothing of it is applied. ``{"write": null}`` (or no ``write`` at
all) changes nothing. Every write, refusal and turn is an event in the board's history, which is
only ever appended to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

EventKind = Literal["start", "write", "pass", "conflict", "malformed", "failed", "gave-up"]
MAX_KEY_CHARS = 200


class Write(BaseModel):
    """One contributor's change to the board."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_version: int = Field(ge=0, description="the board version the change was made on")
    set: dict[str, Any] = {}
    delete: list[str] = []

    def touched(self) -> list[str]:
        """Every key the write touches, in order."""
        return list(dict.fromkeys([*self.set, *self.delete]))


class WriteConflictError(Exception):
    """A write made on a version older than a change to a key it touches."""


@dataclass
class Board:
    """The board's content, versions and history."""

    state: dict[str, Any]
    version: int = 0
    key_versions: dict[str, int] = field(default_factory=dict)
    writers: dict[str, str] = field(default_factory=dict)  # key -> who changed it last ("" for the request)
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(cls, state: Mapping[str, Any]) -> Board:
        """A board holding ``state`` at version 0, every key written by the request."""
        board = cls(dict(state), key_versions=dict.fromkeys(state, 0), writers=dict.fromkeys(state, ""))
        board.record("", "start", list(state))
        return board

    def record(self, agent: str, kind: EventKind, keys: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
        """Append an event to the history."""
        event = {"seq": len(self.events) + 1, "version": self.version, "agent": agent, "kind": kind, "keys": list(keys)}
        event.update({k: v for k, v in extra.items() if v not in (None, "")})
        self.events.append(event)
        return event

    def changed_for(self, agent: str, since: int, watches: Sequence[str]) -> list[str]:
        """Keys changed after version ``since`` by someone else (among ``watches``, when given)."""
        keys = [k for k, v in self.key_versions.items() if v > since and self.writers.get(k) != agent]
        return [k for k in keys if k in watches] if watches else keys

    def apply(self, agent: str, write: Write, round_number: int) -> dict[str, Any]:
        """Apply ``write`` as the next version; ``WriteConflictError`` (nothing applied) when it is stale."""
        for key in write.touched():
            changed = self.key_versions.get(key, -1)
            if changed > write.base_version:
                who = self.writers.get(key) or "the request"
                raise WriteConflictError(
                    f"stale write: made on version {write.base_version}, but {key!r} changed in version {changed} "
                    f"(by {who})"
                )
        self.version += 1
        for key, value in write.set.items():
            self.state[key] = value
        for key in write.delete:
            self.state.pop(key, None)
        for key in write.touched():
            self.key_versions[key] = self.version
            self.writers[key] = agent
        return self.record(agent, "write", write.touched(), round=round_number)

    def view(self) -> dict[str, Any]:
        """The board as its live artifact shows it."""
        return {"version": self.version, "board": self.state, "events": self.events}


def read_write(data: object) -> tuple[Write | None, str]:
    """The write a contributor's data holds (None: no change), and why it is malformed (empty when it is not)."""
    if not isinstance(data, dict) or data.get("write") is None:
        return None, ""
    try:
        write = Write.model_validate(data["write"])
    except ValidationError as exc:
        why = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'write'}: {e['msg']}" for e in exc.errors())
        return None, f"malformed write: {why}"
    long = [key for key in write.touched() if not key or len(key) > MAX_KEY_CHARS]
    if long:
        return None, f"malformed write: keys must be 1 to {MAX_KEY_CHARS} characters"
    return write, ""
