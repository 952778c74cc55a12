"""The REST binding's response media type, negotiated at the edge (gateway.bindings.edge)."""

from __future__ import annotations

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, Router, request_response

from gateway.bindings.edge import EdgeGuard, rest_media_type

PREFIX = "/agents/probe"


class A2AJSONResponse(JSONResponse):
    media_type = "application/a2a+json"


async def _result(request: Request) -> Response:
    return A2AJSONResponse({"task": {"id": "t"}})


async def _error(request: Request) -> Response:
    return JSONResponse({"error": {"code": 404}}, status_code=404)


async def _rpc(request: Request) -> Response:
    return A2AJSONResponse({"jsonrpc": "2.0", "id": 1, "result": {}})


def _client() -> httpx.AsyncClient:
    inner = Router([Route("/message:send", _result, methods=["POST"]), Route("/tasks/{id}", _error)])
    app = Router(
        [
            Route(PREFIX, EdgeGuard(request_response(_rpc), PREFIX, 1024), methods=["POST"]),
            Mount(PREFIX, app=EdgeGuard(inner, PREFIX, 1024)),
        ]
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("application/a2a+json", "application/a2a+json"),
        ("application/*;q=0.5, application/a2a+json", "application/a2a+json"),
        ("application/json, application/a2a+json;q=0.5", "application/json"),
        ("application/a2a+json, application/json;q=0.9", "application/a2a+json"),
        ("application/a2a+json;q=0.5, application/json;q=0.5", "application/json"),
        ("text/html", "application/json"),
    ],
)
def test_rest_media_type(accept: str | None, expected: str) -> None:
    assert rest_media_type(accept) == expected


async def test_rest_result_is_application_json_by_default() -> None:
    async with _client() as client:
        response = await client.post(f"{PREFIX}/message:send", json={})
    assert response.headers["content-type"] == "application/json"
    assert "accept" in response.headers["vary"].lower()
    assert response.json() == {"task": {"id": "t"}}


async def test_rest_result_keeps_a2a_media_type_when_preferred() -> None:
    async with _client() as client:
        response = await client.post(f"{PREFIX}/message:send", json={}, headers={"Accept": "application/a2a+json"})
    assert response.headers["content-type"] == "application/a2a+json"
    assert "accept" in response.headers["vary"].lower()


async def test_rest_error_stays_application_json() -> None:
    async with _client() as client:
        response = await client.get(f"{PREFIX}/tasks/x", headers={"Accept": "application/a2a+json"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert "vary" not in response.headers


async def test_jsonrpc_response_is_left_alone() -> None:
    async with _client() as client:
        response = await client.post(PREFIX, json={})
    assert response.headers["content-type"] == "application/a2a+json"


async def test_request_in_a2a_media_type_is_accepted() -> None:
    async with _client() as client:
        response = await client.post(
            f"{PREFIX}/message:send", content=b"{}", headers={"Content-Type": "application/a2a+json"}
        )
    assert response.status_code == 200


async def test_rest_rejection_is_application_json() -> None:
    async with _client() as client:
        response = await client.post(f"{PREFIX}/message:send", content=b"{}", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/json"
