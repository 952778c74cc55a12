"""A2A push notifications from a peer's task, as trigger events.

The peer posts each event of its task (a ``StreamResponse``: task, status update or artifact
update) with the token of the push config it was given (``X-A2A-Notification-Token``). Artifact
updates are kept (``trigger_pushed``); when the task reaches one of the trigger's states, one
run starts (event id ``<task id>:<state>``, so the peer's retries and repeats start no second
run) with ``{"task": {id, contextId, status, artifacts}}`` as its data.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping

from a2a.types.a2a_pb2 import Artifact, StreamResponse, TaskState, TaskStatus
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError

from gateway.errors import AuthenticationError
from gateway.hosting.executor import data_part
from gateway.spec import PushTriggerSpec
from gateway.triggers.ledger import TriggerLedger
from gateway.triggers.runs import TriggerEvent

TOKEN_HEADER = "x-a2a-notification-token"


class PushTokenError(AuthenticationError):
    """A push notification without the token the trigger expects."""

    message = "the push notification token is missing or wrong"
    reason = "bad-push-token"


def check_token(expected: str, headers: Mapping[str, str]) -> None:
    """``PushTokenError`` unless the request carries ``expected``: ``X-A2A-Notification-Token``, or a bearer token.

    A push config's ``token`` arrives in the first, its ``authentication`` (scheme Bearer) in ``Authorization``.
    """
    scheme, _, bearer = headers.get("authorization", "").partition(" ")
    given = headers.get(TOKEN_HEADER, "") or (bearer.strip() if scheme.lower() == "bearer" else "")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise PushTokenError(f"the {TOKEN_HEADER} header is {'wrong' if given else 'missing'}")


def parse(body: bytes) -> StreamResponse:
    """The notification's event; ``ValueError`` when it is not one."""
    try:
        value = json.loads(body)
        if not isinstance(value, dict):
            raise ValueError("the body is not a JSON object")
        event = StreamResponse()
        ParseDict(value, event, ignore_unknown_fields=True)
        return event
    except (json.JSONDecodeError, UnicodeDecodeError, ParseError) as exc:
        raise ValueError(f"the body is not an A2A StreamResponse: {exc}") from None


def state_name(state: int) -> str:
    """``TASK_STATE_INPUT_REQUIRED`` as the trigger's ``input-required``."""
    return str(TaskState.Name(state)).removeprefix("TASK_STATE_").lower().replace("_", "-")


def _artifact(artifact: Artifact, kept: str | None, append: bool) -> str:
    if append and kept:
        merged = ParseDict(json.loads(kept), Artifact())
        merged.parts.extend(artifact.parts)
        artifact = merged
    return json.dumps(MessageToDict(artifact), separators=(",", ":"))


async def pushed_event(
    ledger: TriggerLedger, agent: str, trigger: PushTriggerSpec, event: StreamResponse, body: bytes
) -> TriggerEvent | str:
    """The trigger event a notification completes, or what became of it when it starts none (kept, ignored)."""
    kind = event.WhichOneof("payload")
    if kind == "artifact_update":
        update = event.artifact_update
        kept = await ledger.pushed_artifacts(agent, trigger.name, update.task_id)
        artifact_id = update.artifact.artifact_id or update.artifact.name or "artifact"
        text = _artifact(update.artifact, kept.get(artifact_id), update.append)
        await ledger.keep_artifact(agent, trigger.name, update.task_id, artifact_id, text)
        return f"kept artifact {artifact_id!r} of task {update.task_id}"
    if kind == "task":
        task_id, context_id, status = event.task.id, event.task.context_id, event.task.status
        artifacts = list(event.task.artifacts)
    elif kind == "status_update":
        task_id, context_id, status = event.status_update.task_id, event.status_update.context_id, TaskStatus()
        status.CopyFrom(event.status_update.status)
        artifacts = []
    else:
        return f"ignored a {kind or 'empty'} notification"
    state = state_name(status.state)
    if state not in trigger.states:
        return f"task {task_id} is {state}; the trigger starts on {', '.join(trigger.states)}"
    if not task_id:
        raise ValueError("the notification names no task id")
    kept = await ledger.pushed_artifacts(agent, trigger.name, task_id)
    given = {a.artifact_id or a.name: json.dumps(MessageToDict(a), separators=(",", ":")) for a in artifacts}
    data = {
        "task": {
            "id": task_id,
            "contextId": context_id,
            "status": MessageToDict(status),
            "artifacts": [json.loads(a) for a in {**kept, **given}.values()],
        }
    }
    return TriggerEvent(
        agent=agent,
        trigger=trigger,
        event_id=f"{task_id}:{state}",
        parts=(data_part(data),),
        detail={"peerTaskId": task_id, "peerState": state},
        payload=body,
    )
