"""Runs a stop interrupted: resumed from their checkpoints when the gateway starts, or ended FAILED.

At start-up, before any request is served, every run whose task a stop left submitted or working
is either resumable (its workflow is still hosted, with the same pattern, participants and
options) or failed here with the reason. A checkpoint written before steps had keys
(``checkpoints``) resumes, its steps found by number as then, except a work queue's, which is
failed: its numbers depend on the order attempts finished in. Resumable runs are kept from the start-up sweep and,
once the gateway is serving, resumed in the background: the workflow's executor runs the
pattern again on the stored task with no new message, and the engine replays every
checkpointed step, so no finished step runs twice.

Several replicas on one PostgreSQL: a starting replica takes over only runs whose task was last
written by a process that is gone (``store.tasks.abandoned``: its runner lock is free), so a live
replica's run is neither failed nor resumed twice, however long its step stays silent. Not done
here: runs with a lease (every run started on PostgreSQL now) are taken over through it, from a
replica that died or stopped renewing it, at any time (``gateway.hosting.failover``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

from a2a.auth.user import User
from a2a.server.agent_execution import RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import DefaultRequestHandler

from gateway.auth.policy import Identity, a2a_user
from gateway.orchestration.checkpoints import RunRecord, SqlRunStore
from gateway.orchestration.work_queue import SPEC as WORK_QUEUE
from gateway.orchestration.workflows import fingerprint
from gateway.push.sender import queue_stored_tasks
from gateway.spec import AgentSpec, WorkflowRuntime
from gateway.store.database import Database
from gateway.store.outbox import SqlPushOutbox
from gateway.store.tasks import TaskKey, abandoned, fail_task, task_runner

logger = logging.getLogger(__name__)


def run_owner(record: RunRecord) -> User:
    """The caller who started a run, as recorded: resumed steps act for it, with the scopes it had.

    A run recorded before callers were (an older version) acts for its owner with no scopes.
    """
    caller = record.caller
    if caller is None and record.owner:
        caller = Identity(name=record.owner, scopes=frozenset())
    return a2a_user(caller)


def why_not_resumable(record: RunRecord, spec: AgentSpec | None) -> str:
    """Why the run cannot resume (the task's failure message), or empty when it can."""
    if spec is None:
        return f"The gateway restarted and no longer hosts the workflow {record.agent}; send the request again."
    if not isinstance(spec.runtime, WorkflowRuntime):
        return f"The gateway restarted and {record.agent} is no longer a workflow; send the request again."
    if fingerprint(spec.runtime) != record.fingerprint:
        return (
            f"The gateway restarted and the workflow {record.agent} changed (pattern, participants or options) "
            "since this run started, so it cannot resume; send the request again."
        )
    if spec.runtime.pattern == WORK_QUEUE.name and record.unkeyed:
        # Before steps had keys, a work queue's steps were found by number, which depends on the order its
        # attempts finished in: replaying them could give one item another's result.
        return (
            f"The gateway restarted with a newer version, and this run of the work queue {record.agent} was "
            "checkpointed by an older one that cannot tell which item each finished step was for; send the request "
            "again."
        )
    return ""


async def _fail(db: Database, record: RunRecord, reason: str) -> None:
    """End the run's task FAILED with ``reason``, and queue that end for the task's push configs."""
    if await fail_task(db, (record.agent, record.owner, record.task_id), reason):
        await queue_stored_tasks(SqlPushOutbox(db), [record.task_id])


async def recover_runs(
    db: Database,
    hosted: Mapping[str, AgentSpec],
    unchanged_since_ns: int | None = None,
    skip: Collection[TaskKey] = (),
) -> list[RunRecord]:
    """The interrupted runs that can resume; every other one is failed here with the reason.

    With ``unchanged_since_ns`` (a shared database), only runs whose task was ``abandoned`` by the
    process that last wrote it are taken: a live replica's run is left alone, however silent.
    Runs in ``skip`` (those with a lease, on PostgreSQL) are left to their lease's takeover
    (``gateway.hosting.failover``), at any time, not only at a start.
    """
    store = SqlRunStore(db)
    resumable: list[RunRecord] = []
    records = [r for r in await store.interrupted() if (r.agent, r.owner, r.task_id) not in skip]
    runners = [await task_runner(db, (r.agent, r.owner, r.task_id)) for r in records]
    for record, gone in zip(records, await abandoned(db, runners, unchanged_since_ns), strict=True):
        if not gone:
            continue  # its process is alive (another replica): it is running there
        reason = why_not_resumable(record, hosted.get(record.agent))
        if not reason:
            resumable.append(record)
            continue
        await _fail(db, record, reason)
        record.state = "failed"
        await store.save(record)
        logger.warning("run %s of %s cannot resume: %s", record.task_id, record.agent, reason)
    return resumable


async def resume_run(handler: DefaultRequestHandler, record: RunRecord, db: Database) -> None:
    """Run the workflow's executor again on the stored task, as its owner, until the run ends or pauses.

    The SDK has no public way to run an executor on a stored task without a new message (which
    would enter the task's history as if the caller had sent it), so this drives the handler's
    active-task registry directly: the same path a message takes, minus the message.
    """
    context = ServerCallContext(user=run_owner(record))
    try:
        registry = handler._active_task_registry
        active = await registry.get_or_create(
            record.task_id, call_context=context, context_id=record.context_id, create_task_if_missing=False
        )
        request = RequestContext(call_context=context, task_id=record.task_id, context_id=record.context_id)
        async for _ in active.subscribe(request=request):
            pass
    except Exception as exc:
        logger.exception("run %s of %s could not resume", record.task_id, record.agent)
        reason = f"The gateway restarted and this run could not resume ({type(exc).__name__}: {exc})."
        await _fail(db, record, reason)
