"""A workflow run that cannot resume after a restart is failed with the reason, and its push configs hear of it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from a2a.types.a2a_pb2 import SendMessageRequest, TaskPushNotificationConfig

from gateway.testing import running_gateway
from tests.bindings.a2a_clients import a2a_client
from tests.orchestration.run_client import STREAMING, output_names, request
from tests.orchestration.test_engine_resume import RESUME_TIMEOUT_S, pipeline
from tests.push.receiver import PushReceiver, push_receiver


def _failed(receiver: PushReceiver) -> bool:
    return any(d.kind() == ("task", "TASK_STATE_FAILED") for d in receiver.accepted)


async def test_a_run_that_cannot_resume_ends_failed_at_its_receiver(tmp_path: Path) -> None:
    settings = pipeline(tmp_path)
    async with push_receiver() as receiver:
        message = SendMessageRequest(message=request("wait: 5"))
        message.configuration.task_push_notification_config.CopyFrom(TaskPushNotificationConfig(url=receiver.url))
        async with running_gateway(settings) as gateway, a2a_client(gateway.agent_url("pipeline"), STREAMING) as client:
            async with asyncio.timeout(RESUME_TIMEOUT_S):
                async for event in client.send_message(message):
                    task_id = event.task.id or event.status_update.task_id or event.artifact_update.task_id
                    if "step-1-counter" in output_names([event.artifact_update.artifact]):
                        break  # the gateway stops with the run checkpointed after its first step
        (settings.agents / "pipeline.yaml").unlink()
        async with running_gateway(settings):
            await receiver.wait_for(_failed)
    ended = next(d for d in receiver.accepted if d.kind() == ("task", "TASK_STATE_FAILED"))
    assert ended.body["task"]["id"] == task_id
    assert "no longer hosts the workflow pipeline" in ended.body["task"]["status"]["message"]["parts"][0]["text"]
