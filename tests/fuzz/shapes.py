"""Hypothesis strategies for what clients send: mostly A2A- and MCP-shaped, often subtly wrong, sometimes garbage."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import strategies as st

# -- building blocks ----------------------------------------------------------------------------

ODD_INTS = st.sampled_from([0, -1, 1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63, 2**64, 10**30, -(10**30)])
INTS = st.one_of(st.integers(-5, 200), ODD_INTS)
NUMBERS = st.one_of(INTS, st.floats(allow_nan=False, allow_infinity=False), st.just(1e300))
TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "\ud800", "..", "../../etc/passwd", "%00", "a/b", "?x=1", "x" * 5000, "💥" * 50]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12
)
OBJECTS = st.dictionaries(TEXT, JSON, max_size=4)
IDS = st.one_of(st.uuids().map(str), TEXT, JSON)
TIMESTAMPS = st.one_of(
    st.sampled_from(
        [
            "2026-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "1970-01-01T00:00:00.999999999Z",
            "2026-13-45T99:99:99Z",
            "yesterday",
        ]
    ),
    TEXT,
    INTS,
)
STATES = st.one_of(
    st.sampled_from(["TASK_STATE_COMPLETED", "TASK_STATE_WORKING", "TASK_STATE_UNSPECIFIED", "completed", "NOPE"]),
    INTS,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``strategy``, or any JSON value instead (the wrong type for the field)."""
    return st.one_of(strategy, strategy, strategy, JSON)


B64 = st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
PART_V1 = st.one_of(
    st.fixed_dictionaries({"text": maybe(TEXT)}, optional={"metadata": maybe(OBJECTS)}),
    st.fixed_dictionaries({"raw": maybe(B64)}, optional={"filename": maybe(TEXT), "mediaType": maybe(TEXT)}),
    st.fixed_dictionaries({"url": maybe(TEXT)}, optional={"mediaType": maybe(TEXT)}),
    st.fixed_dictionaries({"data": JSON}),
    st.just({}),
    OBJECTS,
)
ROLES_V1 = st.one_of(st.sampled_from(["ROLE_USER", "ROLE_AGENT", "ROLE_UNSPECIFIED", "user"]), INTS)
MESSAGE_V1 = st.fixed_dictionaries(
    {"role": ROLES_V1, "parts": maybe(st.lists(PART_V1, max_size=4)), "messageId": maybe(IDS)},
    optional={
        "taskId": maybe(IDS),
        "contextId": maybe(IDS),
        "metadata": maybe(OBJECTS | st.just({"switchboard": {"hops": 10**19}}) | st.just({"skill": "reveal"})),
        "extensions": maybe(st.lists(TEXT, max_size=3)),
        "referenceTaskIds": maybe(st.lists(IDS, max_size=3)),
    },
)
SEND_V1 = st.fixed_dictionaries(
    {"message": maybe(MESSAGE_V1)},
    optional={
        "configuration": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "historyLength": maybe(INTS),
                    "acceptedOutputModes": maybe(st.lists(TEXT, max_size=3)),
                    "returnImmediately": maybe(st.booleans()),
                    "taskPushNotificationConfig": maybe(OBJECTS),
                },
            )
        ),
        "metadata": maybe(OBJECTS),
        "tenant": maybe(TEXT),
    },
)
PUSH_CONFIG_V1 = st.fixed_dictionaries(
    {"taskId": maybe(IDS)},
    optional={
        "url": maybe(
            st.sampled_from(["http://127.0.0.1:1/hook", "https://example.com/h", "ftp://x", "http://[::1]/"]) | TEXT
        ),
        "id": maybe(IDS),
        "token": maybe(TEXT),
        "authentication": maybe(OBJECTS),
    },
)
PARAMS_V1: dict[str, st.SearchStrategy[Any]] = {
    "SendMessage": SEND_V1,
    "SendStreamingMessage": SEND_V1,
    "GetTask": st.fixed_dictionaries({"id": maybe(IDS)}, optional={"historyLength": maybe(INTS)}),
    "ListTasks": st.fixed_dictionaries(
        {},
        optional={
            "pageSize": maybe(INTS),
            "pageToken": maybe(TEXT),
            "contextId": maybe(IDS),
            "status": STATES,
            "statusTimestampAfter": maybe(TIMESTAMPS),
            "historyLength": maybe(INTS),
            "includeArtifacts": maybe(st.booleans()),
        },
    ),
    "CancelTask": st.fixed_dictionaries({"id": maybe(IDS)}, optional={"metadata": maybe(OBJECTS)}),
    "SubscribeToTask": st.fixed_dictionaries({"id": maybe(IDS)}),
    "CreateTaskPushNotificationConfig": PUSH_CONFIG_V1,
    "GetTaskPushNotificationConfig": st.fixed_dictionaries({"taskId": maybe(IDS), "id": maybe(IDS)}),
    "ListTaskPushNotificationConfigs": st.fixed_dictionaries(
        {"taskId": maybe(IDS)}, optional={"pageSize": maybe(INTS), "pageToken": maybe(TEXT)}
    ),
    "DeleteTaskPushNotificationConfig": st.fixed_dictionaries({"taskId": maybe(IDS), "id": maybe(IDS)}),
    "GetExtendedAgentCard": st.just({}),
}

PART_V03 = st.one_of(
    st.fixed_dictionaries({"kind": st.just("text"), "text": maybe(TEXT)}),
    st.fixed_dictionaries(
        {
            "kind": st.just("file"),
            "file": maybe(st.fixed_dictionaries({}, optional={"bytes": B64, "uri": TEXT, "name": TEXT})),
        }
    ),
    st.fixed_dictionaries({"kind": st.just("data"), "data": maybe(OBJECTS)}),
    st.fixed_dictionaries({"kind": TEXT}),
    OBJECTS,
)
MESSAGE_V03 = st.fixed_dictionaries(
    {
        "role": maybe(st.sampled_from(["user", "agent"])),
        "parts": maybe(st.lists(PART_V03, max_size=4)),
        "messageId": maybe(IDS),
    },
    optional={"kind": st.just("message"), "taskId": maybe(IDS), "contextId": maybe(IDS), "metadata": maybe(OBJECTS)},
)
TASK_ID_V03 = st.fixed_dictionaries({"id": maybe(IDS)}, optional={"historyLength": maybe(INTS)})
PARAMS_V03: dict[str, st.SearchStrategy[Any]] = {
    "message/send": st.fixed_dictionaries({"message": maybe(MESSAGE_V03)}, optional={"configuration": maybe(OBJECTS)}),
    "message/stream": st.fixed_dictionaries({"message": maybe(MESSAGE_V03)}),
    "tasks/get": TASK_ID_V03,
    "tasks/cancel": TASK_ID_V03,
    "tasks/resubscribe": TASK_ID_V03,
    "tasks/pushNotificationConfig/set": st.fixed_dictionaries(
        {"taskId": maybe(IDS), "pushNotificationConfig": maybe(OBJECTS)}
    ),
    "tasks/pushNotificationConfig/get": st.fixed_dictionaries(
        {"id": maybe(IDS)}, optional={"pushNotificationConfigId": maybe(IDS)}
    ),
    "tasks/pushNotificationConfig/list": st.fixed_dictionaries({"id": maybe(IDS)}),
    "tasks/pushNotificationConfig/delete": st.fixed_dictionaries(
        {"id": maybe(IDS), "pushNotificationConfigId": maybe(IDS)}
    ),
    "agent/getAuthenticatedExtendedCard": st.just({}),
}
STREAMING_METHODS = frozenset({"SendStreamingMessage", "SubscribeToTask", "message/stream", "tasks/resubscribe"})

# -- whole bodies -------------------------------------------------------------------------------


@st.composite
def jsonrpc_call(draw: st.DrawFn) -> tuple[str, Any]:
    """``(method, params)``: a known method (v1.0 or v0.3) with its params, or something else entirely."""
    table = draw(st.sampled_from([PARAMS_V1, PARAMS_V1, PARAMS_V03]))
    method = draw(st.sampled_from(sorted(table)))
    params = draw(maybe(table[method]))
    return draw(st.one_of(st.just(method), st.just(method), TEXT, JSON)), params


@st.composite
def jsonrpc_body(draw: st.DrawFn) -> tuple[bytes, Any]:
    """A JSON-RPC request body as bytes, and its method (as sent)."""
    method, params = draw(jsonrpc_call())
    envelope: dict[str, Any] = {"jsonrpc": draw(st.sampled_from(["2.0", "2.0", "2.0", "1.0", 2])), "method": method}
    envelope["id"] = draw(st.one_of(st.integers(0, 1000), st.uuids().map(str), st.none(), JSON))
    if draw(st.booleans()) or params is not None:
        envelope["params"] = params
    if draw(st.integers(0, 9)) == 0:
        del envelope[draw(st.sampled_from(sorted(envelope)))]
    document: Any = envelope if draw(st.integers(0, 9)) else [envelope]
    return draw(mangled(json.dumps(document).encode())), method


@st.composite
def mangled(draw: st.DrawFn, body: bytes) -> bytes:
    """``body``, or a broken version of it: cut, with bytes flipped, not UTF-8, nested deep, or random bytes."""
    how = draw(st.integers(0, 19))
    if how == 0 and body:
        return body[: draw(st.integers(0, len(body) - 1))]
    if how == 1 and body:
        at = draw(st.integers(0, len(body) - 1))
        return body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :]
    if how == 2:
        return body.replace(b'"', b'"\xff', 1)
    if how == 3:
        depth = draw(st.sampled_from([50, 99, 101, 1000, 5000]))
        return b'{"a":' + b"[" * depth + b"]" * depth + b"}"
    if how == 4:
        return draw(st.binary(max_size=200))
    return body


def headers(credentials: dict[str, str]) -> st.SearchStrategy[dict[str, str]]:
    """Request headers around ``credentials``: the A2A version, the media type, sometimes odd ones."""
    version = st.sampled_from([None, "1.0", "1.0", "1.0", "0.3", "1", "2.0", "abc", ""])
    media = st.sampled_from(
        [
            "application/json",
            "application/json",
            "application/a2a+json",
            "text/plain",
            "application/json; charset=latin-1",
        ]
    )

    def build(v: str | None, m: str) -> dict[str, str]:
        found = {"Content-Type": m, **credentials}
        if v is not None:
            found["A2A-Version"] = v
        return found

    return st.builds(build, version, media)


def rest_path(agent: str) -> st.SearchStrategy[tuple[str, str, bytes | None]]:
    """``(method, path, body)`` for the agent's HTTP+JSON routes (v1.0 and the v0.3 ``/v1`` ones)."""
    ids = st.one_of(st.uuids().map(str), st.text(alphabet="abcXYZ019-_.~%:", min_size=1, max_size=20))

    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, str, bytes | None]:
        task = draw(ids)
        prefix = draw(st.sampled_from(["", "", "/v1", f"/{draw(ids)}"]))
        routes: list[tuple[str, str, st.SearchStrategy[Any] | None]] = [
            ("POST", "/message:send", SEND_V1),
            ("POST", "/message:stream", SEND_V1),
            ("POST", f"/tasks/{task}:cancel", OBJECTS),
            ("GET", f"/tasks/{task}:subscribe", None),
            ("GET", f"/tasks/{task}", None),
            ("GET", "/tasks", None),
            ("POST", f"/tasks/{task}/pushNotificationConfigs", PUSH_CONFIG_V1),
            ("GET", f"/tasks/{task}/pushNotificationConfigs", None),
            ("GET", f"/tasks/{task}/pushNotificationConfigs/{draw(ids)}", None),
            ("DELETE", f"/tasks/{task}/pushNotificationConfigs/{draw(ids)}", None),
            ("GET", "/extendedAgentCard", None),
            ("GET", "/card", None),
            ("PUT", "/message:send", OBJECTS),
        ]
        method, path, body = draw(st.sampled_from(routes))
        query = draw(
            st.dictionaries(
                st.sampled_from(
                    ["pageSize", "historyLength", "pageToken", "status", "contextId", "statusTimestampAfter"]
                ),
                st.one_of(INTS.map(str), TEXT.filter(lambda t: "\x00" not in t and "\ud800" not in t)),
                max_size=3,
            )
        )
        url = f"/agents/{agent}{prefix}{path}"
        if query:
            url += "?" + "&".join(f"{k}={httpx_quote(v)}" for k, v in query.items())
        data = None if body is None else draw(mangled(json.dumps(draw(maybe(body))).encode()))
        return method, url, data

    return build()


def httpx_quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
