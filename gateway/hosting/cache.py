"""The result cache: a completed task's outcome answered again for the same request (``cache:`` in the agent file).

Opt-in per agent. The key is the agent, a hash of its spec (an edited agent file answers nothing
from before the edit), the skill the message names, the message's normalised parts (text with
its line endings and outer whitespace normalised, data as canonical JSON, files by content hash),
the caller's rights (its scope set, and whether it is anonymous, authenticated or the local
operator: what ``AuthPolicy.may_call`` decides a workflow's steps by, beyond scopes) and, unless
the agent says ``shared: true``, the caller (the task owner): one owner's result never answers
another's, and a shared result never answers a caller whose steps would have been refused. Only
a new task (no ``taskId``) is answered from the cache, and only a completed outcome is kept, for
``ttl_s`` seconds, at most ``max_entries`` (least recently used out first), in this process's memory.

A hit is a new task of the caller, saved once, already completed: the kept artifacts and final
status message, the caller's message in its history, and ``{"cache": {"hit": true, "storedAt",
"ageSeconds"}}`` in its metadata (plus ``sourceTaskId`` when the kept task is the caller's own).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import Artifact, Message, Part, Task, TaskState, TaskStatus
from google.protobuf.json_format import MessageToDict

from gateway.auth.policy import caller_of
from gateway.spec import AgentSpec, CacheSpec
from gateway.telemetry import metrics
from gateway.telemetry.access import message_skill


def spec_hash(spec: AgentSpec) -> str:
    """A hash of the whole agent file as loaded: any change to it is a new cache."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]


def _part_key(part: Part) -> object:
    kind = part.WhichOneof("content")
    if kind == "text":
        return ["text", "\n".join(line.rstrip() for line in part.text.replace("\r\n", "\n").strip().split("\n"))]
    if kind == "data":
        return ["data", MessageToDict(part.data)]
    if kind == "raw":
        return ["raw", part.media_type, part.filename, hashlib.sha256(part.raw).hexdigest()]
    return [kind or "", part.media_type, part.url]


def _copy(artifact: Artifact) -> Artifact:
    copied = Artifact()
    copied.CopyFrom(artifact)
    return copied


@dataclass(frozen=True)
class Kept:
    """One kept outcome."""

    artifacts: tuple[Artifact, ...]
    status_message: Message | None
    task_id: str
    owner: str
    stored_at: float


class ResultCache:
    """One agent's cache (see the module)."""

    def __init__(self, agent: str, config: CacheSpec, version: str) -> None:
        self.agent = agent
        self.config = config
        self.version = version
        self._entries: OrderedDict[str, Kept] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, message: Message, context: ServerCallContext) -> str | None:
        """The cache key of a request, or None when it may not be answered from the cache (it continues a task)."""
        if message.task_id or message.reference_task_ids:
            return None
        caller = caller_of(context.user)
        skill = message_skill(message)
        owner = "" if self.config.shared else context.user.user_name
        scopes = sorted(caller.scopes) if caller is not None else []
        standing = "anonymous" if caller is None else "operator" if caller.trusted else "authenticated"
        parts = [_part_key(part) for part in message.parts]
        material = [self.agent, self.version, skill, owner, standing, scopes, parts]
        return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def answer(self, key: str, message: Message, context: ServerCallContext) -> Task | None:
        """A new completed task answering ``message`` from the cache, or None (a miss)."""
        kept = self._entries.get(key)
        now = time.time()
        if kept is None or now - kept.stored_at > self.config.ttl_s:
            if kept is not None:
                del self._entries[key]
            self.misses += 1
            metrics.CACHE_LOOKUPS.labels(self.agent, "miss").inc()
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        metrics.CACHE_LOOKUPS.labels(self.agent, "hit").inc()
        task = Task(id=str(uuid.uuid4()), context_id=message.context_id or str(uuid.uuid4()))
        asked = Message()
        asked.CopyFrom(message)
        asked.task_id, asked.context_id = task.id, task.context_id
        task.history.append(asked)
        task.artifacts.extend(kept.artifacts)
        task.status.CopyFrom(TaskStatus(state=TaskState.TASK_STATE_COMPLETED))
        if kept.status_message is not None:
            task.status.message.CopyFrom(kept.status_message)
            task.status.message.message_id = str(uuid.uuid4())
            task.status.message.task_id, task.status.message.context_id = task.id, task.context_id
        task.status.timestamp.GetCurrentTime()
        stored = datetime.datetime.fromtimestamp(kept.stored_at, datetime.UTC).isoformat(timespec="milliseconds")
        mark: dict[str, object] = {"hit": True, "storedAt": stored.replace("+00:00", "Z")}
        mark["ageSeconds"] = round(now - kept.stored_at, 3)
        if kept.owner == context.user.user_name:
            mark["sourceTaskId"] = kept.task_id
        task.metadata.update({"cache": mark})
        return task

    def keep(self, key: str, task: Task, context: ServerCallContext) -> None:
        """Keep ``task``'s outcome under ``key`` if it completed (and is no cache hit itself)."""
        if task.status.state != TaskState.TASK_STATE_COMPLETED or "cache" in task.metadata:
            return
        message = None
        if task.status.HasField("message"):
            message = Message()
            message.CopyFrom(task.status.message)
        artifacts = tuple(_copy(artifact) for artifact in task.artifacts)
        kept = Kept(artifacts, message, task.id, context.user.user_name, time.time())
        self._entries[key] = kept
        self._entries.move_to_end(key)
        while len(self._entries) > self.config.max_entries:
            self._entries.popitem(last=False)


def build_cache(spec: AgentSpec) -> ResultCache | None:
    """The agent's cache when its file asks for one."""
    return ResultCache(spec.name, spec.cache, spec_hash(spec)) if spec.cache is not None else None
