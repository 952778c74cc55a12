"""A2A over gRPC for every hosted agent, on one ``grpc.aio`` server beside the HTTP app.

One port serves all agents. Each card's GRPC interface carries the agent's name as its
``tenant``; a2a-sdk's client copies it into every request, and the call goes to that agent's
``GrpcHandler``. Calls without a tenant (the A2A TCK dials the interface URL and ignores
``tenant``; the v0.3 protocol has no such field) go to the configured default agent, or fail
with INVALID_ARGUMENT saying which field to set.

Beside ``lf.a2a.v1.A2AService`` the server has the v0.3 ``a2a.v1.A2AService`` (the SDK's
``CompatGrpcHandler``), gRPC health checking and server reflection. The A2A services are built
from their proto descriptors rather than the generated ``add_*_to_server`` so that every
failure has an A2A status: a request that does not parse is INVALID_ARGUMENT (grpcio would say
UNKNOWN) and an unexpected exception is INTERNAL, without its text.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

import grpc
import grpc.aio
from a2a.compat.v0_3 import a2a_v0_3_pb2
from a2a.compat.v0_3.grpc_handler import CompatGrpcHandler
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import GrpcHandler, RequestHandler
from a2a.server.request_handlers.grpc_handler import GrpcServerCallContextBuilder
from a2a.types import a2a_pb2
from a2a.types.a2a_pb2 import AgentInterface
from a2a.utils import errors as a2a_errors
from a2a.utils.constants import PROTOCOL_VERSION_0_3, PROTOCOL_VERSION_1_0, VERSION_HEADER, TransportProtocol
from a2a.utils.grpc_status import GrpcStatus, status_to_grpc
from a2a.utils.proto_utils import validation_errors_to_bad_request
from a2a.utils.version_validator import validate_version
from google.protobuf import message, message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.errors import AgentBusyError, GatewayError, UnknownAgentError, retry_after_seconds, wire_for

logger = logging.getLogger(__name__)

A2A_SERVICE: ServiceDescriptor = a2a_pb2.DESCRIPTOR.services_by_name["A2AService"]
A2A_V03_SERVICE: ServiceDescriptor = a2a_v0_3_pb2.DESCRIPTOR.services_by_name["A2AService"]
A2A_ERROR_DOMAIN = "a2a-protocol.org"
GATEWAY_ERROR_DOMAIN = "switchboard"
SHUTDOWN_GRACE_S = 5.0

_Code = grpc.StatusCode
# The A2A spec's table (section 5.4, checked by the TCK). a2a-sdk 1.3 answers the three
# "not supported" errors FAILED_PRECONDITION; the spec says UNIMPLEMENTED.
A2A_STATUS: dict[type[a2a_errors.A2AError], grpc.StatusCode] = {
    a2a_errors.TaskNotFoundError: _Code.NOT_FOUND,
    a2a_errors.TaskNotCancelableError: _Code.FAILED_PRECONDITION,
    a2a_errors.PushNotificationNotSupportedError: _Code.UNIMPLEMENTED,
    a2a_errors.UnsupportedOperationError: _Code.UNIMPLEMENTED,
    a2a_errors.ContentTypeNotSupportedError: _Code.INVALID_ARGUMENT,
    a2a_errors.InvalidAgentResponseError: _Code.INTERNAL,
    a2a_errors.ExtendedAgentCardNotConfiguredError: _Code.FAILED_PRECONDITION,
    a2a_errors.ExtensionSupportRequiredError: _Code.FAILED_PRECONDITION,
    a2a_errors.VersionNotSupportedError: _Code.UNIMPLEMENTED,
    a2a_errors.InvalidParamsError: _Code.INVALID_ARGUMENT,
    a2a_errors.InvalidRequestError: _Code.INVALID_ARGUMENT,
    a2a_errors.JSONParseError: _Code.INVALID_ARGUMENT,
    a2a_errors.MethodNotFoundError: _Code.UNIMPLEMENTED,
    a2a_errors.InternalError: _Code.INTERNAL,
}

WireFailure = a2a_errors.A2AError | GatewayError
Abort = Callable[[grpc.aio.ServicerContext, WireFailure], Awaitable[NoReturn]]
CallGuard = Callable[[str, str, message.Message, grpc.aio.ServicerContext], Awaitable[None]]
"""Checks a call once its agent is known: ``(agent, method, request, context)``; raises to refuse it."""


def grpc_address(base_url: str, port: int) -> str:
    """The ``host:port`` gRPC clients dial: the public base URL's host, with the gRPC port."""
    host = urlsplit(base_url).hostname or "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def grpc_interface(address: str, agent: str) -> AgentInterface:
    """The card entry for agent ``agent`` on the shared gRPC port: its name is the tenant."""
    return AgentInterface(
        url=address,
        protocol_binding=TransportProtocol.GRPC.value,
        protocol_version=PROTOCOL_VERSION_1_0,
        tenant=agent,
    )


def _bind_address(host: str, port: int) -> str:
    host = host or "::"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- errors on the wire ------------------------------------------------------------------------


def _rich_status(code: grpc.StatusCode, text: str, info: error_details_pb2.ErrorInfo, *extra: Any) -> GrpcStatus:
    status = status_pb2.Status(code=code.value[0], message=text)
    for detail in (info, *extra):
        status.details.add().Pack(detail)
    return status_to_grpc(status)


def a2a_status(error: WireFailure) -> GrpcStatus:
    """``error`` as a gRPC status with ``google.rpc.ErrorInfo`` (and ``BadRequest``) details."""
    if isinstance(error, GatewayError):
        reason = error.reason.upper().replace("-", "_")
        info = error_details_pb2.ErrorInfo(reason=reason, domain=GATEWAY_ERROR_DOMAIN)
        return _rich_status(_Code[wire_for(error).grpc_status], error.detail, info)
    reason = a2a_errors.A2A_ERROR_REASONS.get(type(error), "INTERNAL_ERROR")
    data = error.data if isinstance(error.data, dict) else {}
    metadata = {key: value for key, value in data.items() if isinstance(value, str)}  # e.g. a peer error's reason
    info = error_details_pb2.ErrorInfo(reason=reason, domain=A2A_ERROR_DOMAIN, metadata=metadata)
    text, extra = error.message, []
    violations = error.data.get("errors") if isinstance(error, a2a_errors.InvalidParamsError) and error.data else None
    if violations:  # name the fields in the message too, for clients that do not read the details
        extra.append(validation_errors_to_bad_request(violations))
        text = f"{text}: " + "; ".join(f"{v['field']}: {v['message'].rstrip('.')}" for v in violations)
    if isinstance(error, AgentBusyError):  # gRPC's own retry hint, beside the ErrorInfo metadata
        delay = Duration(seconds=retry_after_seconds(error.retry_after_s))
        extra.append(error_details_pb2.RetryInfo(retry_delay=delay))
    return _rich_status(_a2a_code(error), text, info, *extra)


def _a2a_code(error: a2a_errors.A2AError) -> grpc.StatusCode:
    # The spec's table first; then the SDK's table, where the federation errors are registered.
    code = A2A_STATUS.get(type(error))
    if code is None:
        mapping = a2a_errors.A2A_ERROR_MAPPING.get(type(error))
        code = _Code[mapping.grpc_status] if mapping is not None else _Code.INTERNAL
    return code


async def abort_with_details(context: grpc.aio.ServicerContext, error: WireFailure) -> NoReturn:
    """End the call with ``error`` the way A2A v1.0 clients read it (status details in trailers)."""
    status = a2a_status(error)
    context.set_trailing_metadata((*(context.trailing_metadata() or ()), *status.trailing_metadata))
    await context.abort(status.code, status.details)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


async def abort_v03(context: grpc.aio.ServicerContext, error: WireFailure) -> NoReturn:
    """End the call the way the SDK's v0.3 client reads it: ``"<ErrorClass>: <message>"``."""
    status = a2a_status(error)
    text = error.detail if isinstance(error, GatewayError) else error.message
    await context.abort(status.code, f"{type(error).__name__}: {text}")
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


V03_SENDS = frozenset({"SendMessage", "SendStreamingMessage"})


def check_v03_request(method: str, request: message.Message) -> None:
    """``InvalidParamsError`` for a v0.3 message part with no content, which the SDK's conversion fails on.

    The SDK converts a v0.3 request to its v1.0 form inside the call and fails on such a part
    with a ``ValueError``, which would reach the client as INTERNAL.
    """
    if method not in V03_SENDS or not isinstance(request, a2a_v0_3_pb2.SendMessageRequest):
        return
    for n, part in enumerate(request.request.content):
        if part.WhichOneof("part") is None:
            raise a2a_errors.InvalidParamsError(
                message=f"part {n} of the message has no content: set text, file or data"
            )


class SpecGrpcHandler(GrpcHandler):
    """The SDK's v1.0 handler, answering A2A errors with the spec's status codes."""

    async def abort_context(self, error: a2a_errors.A2AError, context: grpc.aio.ServicerContext) -> None:
        """End the call with ``error``'s spec status and its ``ErrorInfo``."""
        await abort_with_details(context, error)


# --- routing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Unparsed:
    """A request whose bytes are not the method's message (kept so the call can say so)."""

    type_name: str
    reason: str


def _parser(cls: type[message.Message]) -> Callable[[bytes], message.Message | _Unparsed]:
    def parse(data: bytes) -> message.Message | _Unparsed:
        try:
            return cls.FromString(data)
        except message.DecodeError as exc:
            return _Unparsed(cls.DESCRIPTOR.full_name, str(exc))

    return parse


def _version_gate(version: str) -> Callable[[grpc.aio.ServicerContext], Awaitable[None]]:
    """The SDK's own ``A2A-Version`` rule (missing means 0.3, only the major counts), on gRPC metadata."""

    @validate_version(version)
    async def sdk_rule(context: ServerCallContext) -> None:
        return None

    async def gate(context: grpc.aio.ServicerContext) -> None:
        key = VERSION_HEADER.lower()
        values = [v for k, v in context.invocation_metadata() or () if k.lower() == key]
        sent = {VERSION_HEADER: values[0]} if values else {}
        try:
            await sdk_rule(ServerCallContext(state={"headers": sent}))
        except a2a_errors.VersionNotSupportedError as exc:
            if sent:
                raise
            hint = f" A call without {key} metadata is 0.3; send {key}: {version}."
            raise a2a_errors.VersionNotSupportedError(message=exc.message + hint) from None

    return gate


Observe = Callable[[grpc.aio.ServicerContext, str, Any], AbstractAsyncContextManager[None]]
"""Wraps each call (``gateway.telemetry.access.Telemetry.grpc_call``): its span, metrics, log line, audit row."""


@asynccontextmanager
async def _unobserved(context: grpc.aio.ServicerContext, method: str, request: Any) -> AsyncIterator[None]:
    yield


@dataclass(frozen=True)
class _Service:
    """One A2A gRPC service: the protocol version it speaks and each agent's servicer for it."""

    descriptor: ServiceDescriptor
    agents: Mapping[str, Any]
    default_agent: str
    version_gate: Callable[[grpc.aio.ServicerContext], Awaitable[None]]
    abort: Abort
    unnamed: str  # what a call that names no agent (and finds no default) is told
    guard: CallGuard | None = None
    check: Callable[[str, message.Message], None] | None = None  # the request itself, before any agent sees it
    observe: Observe = _unobserved  # telemetry around each call (gateway.telemetry.access)

    async def servicer_for(
        self, request: message.Message | _Unparsed, context: grpc.aio.ServicerContext, method: str = ""
    ) -> Any:
        """The servicer of the agent this call is for; raises the A2A or gateway error when there is none."""
        await self.version_gate(context)
        if isinstance(request, _Unparsed):
            raise a2a_errors.InvalidRequestError(message=f"not a valid {request.type_name}: {request.reason}")
        if self.check is not None:
            self.check(method, request)
        name = getattr(request, "tenant", "") or self.default_agent
        if not name:
            hosted = ", ".join(sorted(self.agents))
            raise a2a_errors.InvalidParamsError(message=f"{self.unnamed} (hosted here: {hosted})")
        servicer = self.agents.get(name)
        if servicer is None:
            raise UnknownAgentError(f"no agent named {name!r} is hosted here")
        if self.guard is not None:
            await self.guard(name, method, request, context)
        return servicer

    @asynccontextmanager
    async def edge(self, context: grpc.aio.ServicerContext, method: str) -> AsyncIterator[None]:
        """Turn whatever escapes a call into its A2A status; the client never sees UNKNOWN."""
        try:
            yield
        except grpc.aio.AbortError:
            raise
        except (a2a_errors.A2AError, GatewayError) as exc:
            await self.abort(context, exc)
        except Exception:  # the protocol edge: a bug must not reach the client as UNKNOWN + its text
            logger.exception("gRPC %s/%s failed", self.descriptor.full_name, method)
            await self.abort(context, a2a_errors.InternalError(message=f"{method} failed inside the gateway"))


def _unary(service: _Service, method: str) -> Callable[..., Awaitable[Any]]:
    async def call(request: message.Message | _Unparsed, context: grpc.aio.ServicerContext) -> Any:
        async with service.observe(context, method, request), service.edge(context, method):
            servicer = await service.servicer_for(request, context, method)
            return await getattr(servicer, method)(request, context)

    return call


def _streaming(service: _Service, method: str) -> Callable[..., AsyncIterator[Any]]:
    async def call(request: message.Message | _Unparsed, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async with service.observe(context, method, request), service.edge(context, method):
            servicer = await service.servicer_for(request, context, method)
            async for item in getattr(servicer, method)(request, context):
                yield item

    return call


def _rpc_handler(service: _Service) -> grpc.GenericRpcHandler:
    handlers = {}
    for method in service.descriptor.methods:
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        if method.server_streaming:
            make, behaviour = grpc.unary_stream_rpc_method_handler, _streaming(service, method.name)
        else:
            make, behaviour = grpc.unary_unary_rpc_method_handler, _unary(service, method.name)
        handlers[method.name] = make(
            behaviour, request_deserializer=_parser(request_cls), response_serializer=response_cls.SerializeToString
        )
    return grpc.method_handlers_generic_handler(service.descriptor.full_name, handlers)


# --- the server ---------------------------------------------------------------------------------


@dataclass
class GrpcServer:
    """The running gRPC server and the port it got."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int

    async def stop(self, grace: float = SHUTDOWN_GRACE_S) -> None:
        """Report NOT_SERVING, then stop; calls still running after ``grace`` seconds are cancelled."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_grpc_server(
    agents: Mapping[str, RequestHandler],
    *,
    host: str,
    port: int,
    default_agent: str = "",
    context_builder: GrpcServerCallContextBuilder | None = None,
    guard: CallGuard | None = None,
    observe: Observe | None = None,
) -> GrpcServer:
    """Serve A2A (v1.0 and v0.3), health and reflection for ``agents`` on ``host:port`` (0: a free port).

    ``guard`` checks each call once its agent is known (auth); ``context_builder`` makes the SDK's
    ``ServerCallContext`` (its user owns the call's tasks).
    """
    if default_agent and default_agent not in agents:
        raise UnknownAgentError(f"the default gRPC agent {default_agent!r} is not hosted here")
    services = [
        _Service(
            A2A_SERVICE,
            {name: SpecGrpcHandler(h, context_builder) for name, h in agents.items()},
            default_agent,
            _version_gate(PROTOCOL_VERSION_1_0),
            abort_with_details,
            "the request names no agent: set its tenant to the agent's name, as the GRPC interface "
            "of the agent's card says",
            guard,
            observe=observe or _unobserved,
        ),
        _Service(
            A2A_V03_SERVICE,
            {name: CompatGrpcHandler(h, context_builder) for name, h in agents.items()},
            default_agent,
            _version_gate(PROTOCOL_VERSION_0_3),
            abort_v03,
            "an A2A v0.3 request cannot name an agent and this gateway has no default gRPC agent "
            "(SWITCHBOARD_GRPC_DEFAULT_AGENT); call with A2A 1.0 and the agent's name as tenant",
            guard,
            check_v03_request,
            observe or _unobserved,
        ),
    ]
    # grpcio sets SO_REUSEPORT by default: a second gateway on the same port would silently
    # share its traffic instead of failing to start.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers([_rpc_handler(s) for s in services])
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    names = [s.descriptor.full_name for s in services]
    for name in names:
        await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    address = _bind_address(host, port)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot serve gRPC on {address}: the port is in use or not allowed") from exc
    await server.start()
    logger.info("A2A gRPC on %s for %d agent(s)", _bind_address(host, bound), len(agents))
    return GrpcServer(server=server, health=checker, port=bound)
