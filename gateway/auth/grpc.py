"""The auth edge on gRPC: each call to a protected agent is authenticated from its metadata and checked.

``authorization: Bearer <jwt>`` or ``x-api-key`` metadata name the caller. A call without valid
credentials ends UNAUTHENTICATED, one without the agent's (or skill's) scopes PERMISSION_DENIED,
each with a message saying what is wrong. The check runs once the call's agent is known (from its
tenant); the caller it admits is then the ``ServerCallContext`` user the SDK's handler sees, so
it owns the tasks the call creates, as on HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar

import grpc.aio
from a2a.auth.user import User
from a2a.server.request_handlers.grpc_handler import DefaultGrpcServerCallContextBuilder
from google.protobuf import message

from gateway.auth.policy import API_KEY_HEADER, AuthPolicy, Identity, a2a_user
from gateway.errors import AuthenticationError, MissingCredentialsError, PermissionDeniedError
from gateway.spec import AgentSpec
from gateway.telemetry.access import note_caller, note_refusal

logger = logging.getLogger(__name__)

SEND_METHODS = frozenset({"SendMessage", "SendStreamingMessage"})

_caller: ContextVar[Identity | None] = ContextVar("switchboard_grpc_caller", default=None)
"""The caller the guard admitted, for the context builder: both run in the call's own task."""


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name.lower() == key:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None


def _named_skill(request: message.Message) -> str | None:
    """``metadata.skill`` of the message a SendMessage request carries (``message`` in 1.0, ``request`` in 0.3)."""
    fields = request.DESCRIPTOR.fields_by_name
    field = "message" if "message" in fields else "request" if "request" in fields else ""
    if not field or not request.HasField(field):
        return None
    sent = getattr(request, field)
    value = sent.metadata.fields.get("skill") if sent.HasField("metadata") else None
    return value.string_value if value is not None and value.WhichOneof("kind") == "string_value" else None


class GrpcAuthGuard:
    """Checks each gRPC call to a protected agent; ``context_builder`` hands the SDK the admitted caller."""

    def __init__(self, policy: AuthPolicy, specs: Mapping[str, AgentSpec]) -> None:
        self.policy = policy
        self.specs = specs
        self.context_builder = CallerContextBuilder()

    async def __call__(
        self, agent: str, method: str, request: message.Message, context: grpc.aio.ServicerContext
    ) -> None:
        """Admit the call's caller, or raise ``AuthenticationError`` / ``PermissionDeniedError``."""
        _caller.set(None)
        spec = self.specs.get(agent)
        if spec is None or not self.policy.protects(spec):
            return
        sends = method in SEND_METHODS
        try:
            identity = await self.policy.authenticate(
                _metadata(context, "authorization"), _metadata(context, API_KEY_HEADER.lower())
            )
            self.policy.authorize(identity, spec, message=sends, skill=_named_skill(request) if sends else None)
        except (AuthenticationError, PermissionDeniedError) as error:
            level = logging.INFO if isinstance(error, MissingCredentialsError) else logging.WARNING
            logger.log(level, "refused gRPC %s (agent %s): %s", method, agent, error.detail)
            note_refusal(error.detail)
            raise
        _caller.set(identity)
        note_caller(identity.name)


class CallerContextBuilder(DefaultGrpcServerCallContextBuilder):
    """The SDK's gRPC context builder, with the caller the guard admitted as the user."""

    def build_user(self, context: grpc.aio.ServicerContext) -> User:
        """The admitted caller, or the anonymous user for an open agent."""
        return a2a_user(_caller.get())
