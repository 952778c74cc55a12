"""``gateway.hosting.required_fields`` finds what the SDK's ``validate_proto_required_fields`` finds, in the same
words."""

from __future__ import annotations

import pytest
from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import (
    AgentCard,
    Artifact,
    CancelTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskPushNotificationConfig,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import InvalidParamsError
from a2a.utils.proto_utils import validate_proto_required_fields
from google.protobuf.message import Message as ProtoMessage

from gateway.hosting.required_fields import check_request, validate_required_fields
from gateway.testing import RunningGateway


def _relayed() -> SendMessageRequest:
    request = SendMessageRequest(message=Message(role=Role.ROLE_USER, message_id="m1", parts=[Part(text="hi")]))
    request.message.metadata.update({"switchboard": {"hops": 2, "path": ["a", "b"], "nested": [{"x": None}]}})
    return request


def _cases() -> list[ProtoMessage]:
    no_parts = _relayed()
    del no_parts.message.parts[:]
    no_id = _relayed()
    no_id.message.message_id = ""
    empty_part = _relayed()
    empty_part.message.parts.add()
    card_with_map = AgentCard(name="n", description="d", version="1")
    card_with_map.security_schemes["key"].api_key_security_scheme.description = "no name, no location"
    nested_task = Task(id="t", context_id="c", artifacts=[Artifact(artifact_id="", parts=[])], history=[Message()])
    return [
        _relayed(),
        SendMessageRequest(),
        no_parts,
        no_id,
        empty_part,
        CancelTaskRequest(),
        CancelTaskRequest(id="t"),
        Task(),
        nested_task,
        TaskStatusUpdateEvent(),
        TaskPushNotificationConfig(),
        AgentCard(),
        AgentCard(name="n", description="d", version="1"),
        card_with_map,
    ]


def _outcome(check: object, msg: ProtoMessage) -> object:
    try:
        check(msg)  # type: ignore[operator]
    except InvalidParamsError as exc:
        return (exc.message, exc.data)
    return None


@pytest.mark.parametrize("msg", _cases(), ids=lambda m: type(m).__name__)
def test_the_same_violations_as_the_sdk(msg: ProtoMessage) -> None:
    assert _outcome(validate_required_fields, msg) == _outcome(validate_proto_required_fields, msg)


def test_a_relayed_message_passes_and_a_partless_one_names_its_field() -> None:
    validate_required_fields(_relayed())
    request = _relayed()
    del request.message.parts[:]
    with pytest.raises(InvalidParamsError) as caught:
        validate_required_fields(request)
    assert caught.value.data == {
        "errors": [{"field": "message.parts", "message": "Field must contain at least one element."}]
    }


async def test_a_gateway_makes_the_sdk_handlers_check_with_it(gateway: RunningGateway) -> None:
    from a2a.server.request_handlers import request_handler

    assert request_handler.validate_proto_required_fields is check_request  # create_app's doing
    handler = gateway.app.state.gateway.handler("echo")  # a custom executor: the SDK's path
    with pytest.raises(InvalidParamsError) as caught:
        await handler.on_message_send(SendMessageRequest(message=Message(message_id="m")), ServerCallContext())
    assert {"field": "message.parts", "message": "Field must contain at least one element."} in caught.value.data[
        "errors"
    ]
