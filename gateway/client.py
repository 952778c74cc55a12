"""The CLI's A2A client side: list agents, send a message or run a workflow, and get, list, cancel or answer tasks.

Every mistake a user can make here (no text, a missing file, a wrong URL or key, an unknown task)
ends as a ``CliError``: one line on stderr and a non-zero exit, never a traceback. On a terminal,
a task's question (``input-required``) is asked and the answer sent; Ctrl-C cancels the task on
the server before the command exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
from a2a.client import Client, ClientConfig, ClientFactory
from a2a.client.errors import AgentCardResolutionError
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import A2AError, TaskNotFoundError

from gateway.cli_output import (
    TERMINAL,
    WAITING,
    Mode,
    as_json,
    print_agents,
    print_message,
    print_task,
    print_tasks,
    readable,
    render_event,
    state_name,
)

API_KEY_HEADER = "X-API-Key"
EXIT_OK, EXIT_TASK_FAILED, EXIT_USAGE, EXIT_WAITING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
CANCEL_TIMEOUT_S = 10.0
CREDENTIALS_HINT = "pass --api-key KEY or --token TOKEN (or set SWITCHBOARD_API_KEY / SWITCHBOARD_TOKEN)"


class CliError(Exception):
    """A mistake or failure the CLI reports as one line on stderr, exiting with ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Connection:
    """Where the gateway is and how to authenticate to it."""

    base_url: str
    api_key: str | None = None
    token: str | None = None

    def agent_url(self, agent: str) -> str:
        """An agent's URL from its name (a full URL is kept)."""
        return agent if "://" in agent else f"{self.base_url.rstrip('/')}/agents/{agent}"

    def headers(self) -> dict[str, str]:
        """The credential headers: ``X-API-Key`` and/or ``Authorization: Bearer``."""
        headers = {API_KEY_HEADER: self.api_key} if self.api_key else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def http(self, timeout: float | None = 30.0) -> httpx.AsyncClient:
        """An HTTP client sending the credentials with every request (the card fetch included)."""
        return httpx.AsyncClient(headers=self.headers(), timeout=httpx.Timeout(timeout, read=None))


def describe(exc: BaseException) -> str:
    """One line saying what went wrong, with the server's field-level reasons when it gave some."""
    status = exc if isinstance(exc, httpx.HTTPStatusError) else exc.__cause__
    if isinstance(status, httpx.HTTPStatusError):
        text = _refusal(status)
    elif isinstance(exc, A2AError):
        text = exc.message
        errors = (exc.data or {}).get("errors") if isinstance(exc.data, dict) else None
        if isinstance(errors, list) and errors:
            text += ": " + "; ".join(f"{e.get('field', '?')}: {e.get('message', '')}" for e in errors)
    elif isinstance(exc, httpx.HTTPError):
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    else:
        text = str(exc) or type(exc).__name__
    text = " ".join(text.split())
    if " 401" in text or "Unauthorized" in text or "credentials required" in text:
        text += f" ({CREDENTIALS_HINT})"
    return text


def _refusal(error: httpx.HTTPStatusError) -> str:
    """``HTTP 401 Unauthorized from URL: <the gateway's own reason>``, not httpx's text and its link to MDN."""
    response = error.response
    text = f"HTTP {response.status_code} {response.reason_phrase} from {error.request.url}"
    try:
        body = response.json()
    except (httpx.ResponseNotRead, ValueError):  # a streamed body not read, or not JSON
        return text
    error_object = body.get("error") if isinstance(body, dict) else None
    reason = error_object.get("message") if isinstance(error_object, dict) else None
    return f"{text}: {reason}" if isinstance(reason, str) and reason else text


def build_message(text: str, files: Sequence[Path], task: Task | None = None) -> Message:
    """A user message with ``text`` and one file part per path (in ``task``'s conversation, when given)."""
    if not text.strip() and not files:
        raise CliError("nothing to send: give the message text, or a file with --file PATH")
    parts = [Part(text=text)] if text else []
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
        media = mimetypes.guess_type(path.name)[0] or "text/plain"
        parts.append(Part(raw=raw, filename=path.name, media_type=media))
    message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=parts)
    if task is not None:
        message.task_id, message.context_id = task.id, task.context_id
    return message


@contextlib.asynccontextmanager
async def open_agent(conn: Connection, agent: str, *, streaming: bool = True) -> AsyncIterator[Client]:
    """An A2A client for ``agent``, made by the SDK from the agent's card."""
    url = conn.agent_url(agent)
    async with conn.http() as http:
        try:
            client = await ClientFactory(ClientConfig(streaming=streaming, httpx_client=http)).create_from_url(url)
        except AgentCardResolutionError as exc:
            if exc.status_code == 404:
                raise CliError(f"no agent at {url} (HTTP 404); `switchboard agents` lists them") from None
            raise CliError(f"cannot reach agent at {url}: {describe(exc)}") from None
        except (A2AError, httpx.HTTPError, ValueError) as exc:
            raise CliError(f"cannot reach agent at {url}: {describe(exc)}") from None
        try:
            yield client
        finally:
            await client.close()


async def ask(question: str) -> str | None:
    """Ask ``question`` on the terminal; the answer line, or None at end of input."""
    sys.stderr.write(f"{question or 'the agent asks for input'}\n> ")
    sys.stderr.flush()
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def read() -> None:
        if not answer.done():
            answer.set_result(sys.stdin.readline())

    loop.add_reader(sys.stdin.fileno(), read)
    try:
        line = await answer
    finally:
        loop.remove_reader(sys.stdin.fileno())
    return line.rstrip("\n") if line else None


@dataclass
class Conversation:
    """One task as the CLI follows it: sends, streamed events, and the latest task."""

    client: Client
    out: TextIO
    progress: bool
    task: Task | None = None
    reply: Message | None = None

    async def send(self, message: Message) -> None:
        """Send ``message`` and follow its events until the stream ends."""
        async for event in self.client.send_message(SendMessageRequest(message=message)):
            if self.progress:
                render_event(event, self.out)
            if event.HasField("task"):
                self.task = event.task
            elif event.HasField("message"):
                self.reply = event.message
            elif self.task is None and event.HasField("status_update"):
                self.task = Task(id=event.status_update.task_id, context_id=event.status_update.context_id)
        if self.task is not None:
            self.task = await self.client.get_task(GetTaskRequest(id=self.task.id))

    async def follow(self, message: Message, interactive: bool) -> None:
        """Send ``message``; on a terminal, answer each question the task asks until it ends."""
        await self.send(message)
        while interactive and self.task is not None and self.task.status.state in WAITING:
            answer = await ask(readable(self.task.status.message.parts))
            if answer is None:
                return
            await self.send(build_message(answer, (), self.task))

    async def cancel(self) -> str:
        """Cancel the task on the server (after Ctrl-C); what to tell the user."""
        if self.task is None:
            return "interrupted before the agent made a task"
        try:
            async with asyncio.timeout(CANCEL_TIMEOUT_S):
                task = await self.client.cancel_task(CancelTaskRequest(id=self.task.id))
        except (A2AError, httpx.HTTPError, TimeoutError) as exc:
            return f"interrupted; task {self.task.id} could not be canceled: {describe(exc)}"
        return f"interrupted; task {self.task.id} is {state_name(task.status.state)} on the server"


async def until_interrupted(work: Awaitable[None], on_interrupt: Callable[[], Awaitable[str]]) -> bool:
    """Run ``work``; on Ctrl-C stop it and run ``on_interrupt`` (its message goes to stderr). True if interrupted."""
    loop = asyncio.get_running_loop()
    job = asyncio.ensure_future(work)
    interrupted = asyncio.Event()

    def stop() -> None:
        interrupted.set()
        job.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):  # none here (not the main thread, Windows)
        loop.add_signal_handler(signal.SIGINT, stop)
    try:
        await job
    except asyncio.CancelledError:
        if not interrupted.is_set():
            raise
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
    if interrupted.is_set():
        sys.stderr.write(f"switchboard: {await on_interrupt()}\n")
    return interrupted.is_set()


async def send(
    conn: Connection,
    agent: str,
    text: str,
    files: Sequence[Path],
    *,
    stream: bool = False,
    mode: Mode = "text",
    artifacts: Collection[str] | None = None,
) -> int:
    """Send ``text`` (and files) to ``agent`` and print the result; 0 when the task completed.

    Exit codes: 1 the task failed, was canceled or rejected; 3 it waits for input (answer with
    ``switchboard tasks reply``); 130 interrupted (the task is canceled on the server).
    """
    message = build_message(text, files)
    interactive = sys.stdin.isatty() and mode != "json"
    async with open_agent(conn, agent) as client:
        talk = Conversation(client, sys.stdout, progress=stream and mode == "text")
        try:
            if await until_interrupted(talk.follow(message, interactive), talk.cancel):
                return EXIT_INTERRUPTED
        except A2AError as exc:
            raise CliError(describe(exc), EXIT_USAGE if talk.task is None else EXIT_TASK_FAILED) from None
        except httpx.HTTPError as exc:
            raise CliError(f"lost the connection to {conn.agent_url(agent)}: {describe(exc)}") from None
    return finish(talk.task, talk.reply, mode, artifacts, agent)


def finish(task: Task | None, reply: Message | None, mode: Mode, artifacts: Collection[str] | None, agent: str) -> int:
    """Print the outcome and choose the exit code."""
    if task is None:
        if reply is not None:
            print_message(reply, sys.stdout, mode)
        return EXIT_OK
    print_task(task, sys.stdout, mode, artifacts)
    state = task.status.state
    if state in WAITING:
        sys.stderr.write(
            f"switchboard: task {task.id} waits for input; answer with "
            f"`switchboard tasks reply {task.id} --agent {agent} TEXT`\n"
        )
        return EXIT_WAITING
    if mode == "quiet" and state != TaskState.TASK_STATE_COMPLETED:
        reason = readable(task.status.message.parts).split("\n", 1)[0]
        sys.stderr.write(f"switchboard: task {task.id} {state_name(state)}{': ' + reason if reason else ''}\n")
    return EXIT_OK if state == TaskState.TASK_STATE_COMPLETED else EXIT_TASK_FAILED


async def run_workflow(
    conn: Connection, workflow: str, text: str, files: Sequence[Path], *, mode: Mode = "text"
) -> int:
    """Run ``workflow`` on ``text`` (and files), streaming each step's progress; prints the run's result.

    A run is an A2A task of the workflow agent, so this is a streaming send whose status updates
    are the steps' progress; each step's own output stays on the task, in its ``steps`` artifact
    (announced as it arrives as ``[artifact] step-<n>-<agent>``).
    """
    return await send(conn, workflow, text, files, stream=True, mode=mode, artifacts=("result",))


async def agent_names(conn: Connection) -> list[str]:
    """The names of the agents the gateway hosts."""
    return [str(card.get("name", "")) for card in await _cards(conn)]


async def _cards(conn: Connection) -> list[dict[str, Any]]:
    url = f"{conn.base_url.rstrip('/')}/agents"
    async with conn.http(10.0) as http:
        try:
            response = await http.get(url)
            response.raise_for_status()
            cards = response.json()
        except httpx.HTTPStatusError as exc:
            raise CliError(f"cannot list agents at {url}: {describe(exc)}") from None
        except (httpx.HTTPError, ValueError) as exc:
            raise CliError(f"cannot list agents at {url}: {describe(exc)}") from None
    if not isinstance(cards, list):
        raise CliError(f"{url} did not answer with a list of agent cards: is it a Switchboard gateway?")
    return [card for card in cards if isinstance(card, dict)]


async def list_agents(conn: Connection, mode: Mode = "text") -> int:
    """Print the name, description and skills of each agent a gateway hosts."""
    cards = await _cards(conn)
    if mode == "json":
        sys.stdout.write(json.dumps(cards, indent=2) + "\n")
    elif mode == "quiet":
        sys.stdout.write("".join(f"{card.get('name', '')}\n" for card in cards))
    else:
        print_agents(cards, sys.stdout)
    return EXIT_OK


async def _ask_agents(
    conn: Connection,
    agent: str | None,
    call: Callable[[Client], Awaitable[Any]],
    what: str,
    among: Sequence[str] = (),
) -> AsyncIterator[tuple[str, Any]]:
    """``call`` on ``agent``'s client, or on every hosted agent's (or those ``among``) in turn: (name, answer)
    for each that answered.

    A task not found is no answer. Asked by name, an agent's error is the command's; asking every
    agent, one that refuses this caller (or is out of service) is passed over.
    """
    for name in [agent] if agent else among or await agent_names(conn):
        try:
            async with open_agent(conn, name, streaming=False) as client:
                answer = await call(client)
        except TaskNotFoundError:
            continue
        except (A2AError, httpx.HTTPError) as exc:
            if agent is None:
                continue
            raise CliError(f"cannot {what} on {name}: {describe(exc)}") from None
        except CliError:
            if agent is None:
                continue
            raise
        yield name, answer


async def _holder(conn: Connection, task_id: str) -> str | None:
    """The agent holding ``task_id`` as the dashboard's API finds it, or None when it cannot say (turned off,
    an older gateway, not this caller's task)."""
    async with conn.http() as http:
        try:
            response = await http.get(f"{conn.base_url.rstrip('/')}/ui/api/tasks", params={"id": task_id, "limit": 1})
            rows = response.json().get("tasks") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
    if isinstance(rows, list) and rows and isinstance(rows[0], dict) and isinstance(rows[0].get("agent"), str):
        return str(rows[0]["agent"])
    return None


async def _on_agent(conn: Connection, agent: str | None, task_id: str) -> tuple[str, Task]:
    """The agent holding ``task_id`` (``agent``, else the one the dashboard's API names, else every hosted
    agent asked in turn) and the task.

    Asking the agent that holds it first keeps a lookup from being a GetTask error on every other agent,
    which /metrics, the dashboard and the audit trail would count as failed calls.
    """
    get = GetTaskRequest(id=task_id)
    what = f"get task {task_id}"
    if agent is None and (holder := await _holder(conn, task_id)):
        async for name, task in _ask_agents(conn, None, lambda client: client.get_task(get), what, among=[holder]):
            return name, task
    async for name, task in _ask_agents(conn, agent, lambda client: client.get_task(get), what):
        return name, task
    where = f"agent {agent}" if agent else "any agent of this gateway (for this caller)"
    raise CliError(f"no task {task_id} on {where}")


async def get_task(conn: Connection, task_id: str, agent: str | None, mode: Mode = "text") -> int:
    """Print one task."""
    _, task = await _on_agent(conn, agent, task_id)
    print_task(task, sys.stdout, mode)
    return EXIT_OK


def task_state(name: str | None) -> TaskState | None:
    """``input-required`` -> ``TASK_STATE_INPUT_REQUIRED`` (None for None: any state)."""
    if not name:
        return None
    try:
        state: TaskState = TaskState.Value("TASK_STATE_" + name.upper().replace("-", "_"))
    except ValueError:
        names = ", ".join(state_name(s) for s in TaskState.values() if s)
        raise CliError(f"unknown task state {name!r}: one of {names}") from None
    return state


async def list_tasks(conn: Connection, agent: str | None, state: str | None, mode: Mode = "text") -> int:
    """Print the caller's tasks of ``agent`` (or of every agent), newest first, optionally of one state."""
    request = ListTasksRequest(status=task_state(state), page_size=100)
    rows: list[tuple[str, Task]] = []
    async for name, listed in _ask_agents(conn, agent, lambda client: client.list_tasks(request), "list tasks"):
        rows += [(name, task) for task in listed.tasks]
    rows.sort(key=lambda row: row[1].status.timestamp.ToNanoseconds(), reverse=True)
    if mode == "json":
        sys.stdout.write(json.dumps([{"agent": a, "task": json.loads(as_json(t))} for a, t in rows], indent=2) + "\n")
    elif mode == "quiet":
        sys.stdout.write("".join(f"{task.id}\n" for _, task in rows))
    else:
        print_tasks(rows, sys.stdout)
    return EXIT_OK


async def cancel_task(conn: Connection, task_id: str, agent: str | None, mode: Mode = "text") -> int:
    """Cancel a task; 1 when it had already ended."""
    name, task = await _on_agent(conn, agent, task_id)
    if task.status.state in TERMINAL:
        raise CliError(f"task {task_id} already ended ({state_name(task.status.state)}): nothing to cancel", 1)
    async with open_agent(conn, name, streaming=False) as client:
        try:
            task = await client.cancel_task(CancelTaskRequest(id=task_id))
        except (A2AError, httpx.HTTPError) as exc:
            raise CliError(f"cannot cancel task {task_id}: {describe(exc)}", 1) from None
    if mode == "text":
        sys.stdout.write(f"task {task_id} is {state_name(task.status.state)}\n")
    else:
        print_task(task, sys.stdout, mode)
    return EXIT_OK


async def reply_task(
    conn: Connection, task_id: str, agent: str | None, text: str, files: Sequence[Path], mode: Mode = "text"
) -> int:
    """Answer a task that waits for input, then follow it like ``send``."""
    name, task = await _on_agent(conn, agent, task_id)
    if task.status.state not in WAITING:
        raise CliError(f"task {task_id} is {state_name(task.status.state)}, not waiting for input: nothing to answer")
    message = build_message(text, files, task)
    async with open_agent(conn, name) as client:
        talk = Conversation(client, sys.stdout, progress=mode == "text", task=task)
        try:
            if await until_interrupted(talk.follow(message, sys.stdin.isatty() and mode != "json"), talk.cancel):
                return EXIT_INTERRUPTED
        except (A2AError, httpx.HTTPError) as exc:
            raise CliError(f"cannot answer task {task_id}: {describe(exc)}", 1) from None
    return finish(talk.task, talk.reply, mode, None, name)
