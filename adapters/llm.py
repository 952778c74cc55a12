"""The ``llm`` runtime: a chat model behind any OpenAI-compatible chat-completions endpoint.

One call is one streamed ``POST {base}/chat/completions``: the agent file's system prompt, the
task's earlier turns and the caller's message (files inline as fenced blocks, data parts as JSON)
go out; text deltas come back as chunks of the reply artifact, and each agent named in the file's
``handoffs`` that the task's caller may call (``AgentCall.may_call``, as a direct call to it is
checked) is offered as a ``transfer_to_<agent>`` function tool; a transfer the model calls anyway
to one the caller may not call is a tool error saying why, and never a handoff. The file's tools (Python
functions, allow-listed tools of MCP servers: ``adapters.tools``) are offered too: when the model
calls them they run (progress as status updates), their results go back to the model, and it is
asked again, up to ``max_tool_rounds`` times. A tool the model was not offered never runs: the
model is told so. Each MCP server is asked for its tools at start: one that lacks an allow-listed
tool stops the start; one that cannot be reached (then or later) leaves its tools out, and the
agent answers with the rest, the model told which are unavailable, until the server answers again.
Token usage is reported for budgets, summed over the rounds. The endpoint,
model and key come from settings (``SWITCHBOARD_LLM_*``); an agent file's ``runtime.model``
overrides the model. The key is sent as a Bearer token and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import httpx
from a2a.server.agent_execution import AgentExecutor

from adapters.llm_tiers import Judged, confidence, schema_problem, why_escalate
from adapters.tools import Tool, Toolbox, ToolOutcome, Toolset
from gateway.auth.policy import Identity
from gateway.errors import GatewayError, RuntimeLoadError
from gateway.hosting.executor import RuntimeExecutor
from gateway.hosting.mcp_clients import McpClientPool, McpServerError, missing_program
from gateway.hosting.runtimes import Host
from gateway.push.retry import parse_retry_after
from gateway.runtime import AgentCall, Emitter, FileInput, Reply, Usage, add_usage
from gateway.settings import Settings
from gateway.spec import AgentSpec, LlmRuntime, McpToolsSpec

logger = logging.getLogger(__name__)

HANDOFF_PREFIX = "transfer_to_"
MAX_TOOL_NAME = 64  # the OpenAI API's limit on function names
CONNECT_TIMEOUT_S = 10.0
_ERROR_BODY_CHARS = 300
RETRY_AFTER_TRIES = 2
"""How many times a 429/503 with a short enough ``Retry-After`` is waited out before the step fails retryable."""
PARAGRAPH = "\n\n"  # between the texts of the model's turns around tool calls


class RetryableModelError(GatewayError):
    """The model endpoint is overloaded or failing (HTTP 429 or 5xx); the same call may succeed later."""

    message = "model endpoint is temporarily unavailable"
    reason = "model-unavailable"
    retryable: ClassVar[bool] = True

    def __init__(self, detail: str, *, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.retry_after = retry_after


class _StreamError(Exception):
    """The endpoint's stream cannot be understood; the call fails with this reason."""


@dataclass(frozen=True)
class ModelEndpoint:
    """Where and how one agent reaches its model."""

    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    timeout_s: float = 120.0
    temperature: float | None = None
    input_price_per_1k: float = 0.0
    output_price_per_1k: float = 0.0

    @property
    def host(self) -> str:
        """``host[:port]`` of the endpoint, for messages (never credentials or paths)."""
        url = httpx.URL(self.base_url)
        return f"{url.host}:{url.port}" if url.port else url.host

    @property
    def completions_url(self) -> str:
        """The chat-completions URL under the configured base."""
        return f"{self.base_url.rstrip('/')}/chat/completions"

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """The price of a call, from the per-1000-token prices (0 when none are configured)."""
        return (input_tokens * self.input_price_per_1k + output_tokens * self.output_price_per_1k) / 1000


def endpoint_for(spec: AgentSpec, settings: Settings) -> ModelEndpoint:
    """The endpoint of an ``llm`` agent; names the missing setting when there is none."""
    runtime = spec.runtime
    assert isinstance(runtime, LlmRuntime)
    if not settings.llm_base_url:
        raise RuntimeLoadError(f"{spec.name}: no model endpoint configured; set SWITCHBOARD_LLM_BASE_URL")
    model = runtime.model or settings.llm_model
    if not model:
        raise RuntimeLoadError(
            f"{spec.name}: no model configured; set SWITCHBOARD_LLM_MODEL or the file's runtime.model"
        )
    return ModelEndpoint(
        base_url=settings.llm_base_url,
        model=model,
        api_key=settings.llm_api_key.get_secret_value(),
        timeout_s=settings.llm_timeout,
        temperature=runtime.temperature,
        input_price_per_1k=_first(runtime.input_price_per_1k, settings.llm_input_price_per_1k),
        output_price_per_1k=_first(runtime.output_price_per_1k, settings.llm_output_price_per_1k),
    )


def _first(value: float | None, default: float) -> float:
    return default if value is None else value


# -- the request -------------------------------------------------------------------------------


def handoff_tool_name(agent: str) -> str:
    """The function name offering a transfer to ``agent`` (function names allow no hyphens)."""
    return HANDOFF_PREFIX + agent.replace("-", "_")


Handoffs = dict[str, tuple[str, dict[str, Any]]]
"""Tool name -> (agent name, the function tool offered to the model)."""


def handoff_tools(handoffs: list[str]) -> Handoffs:
    """Tool name -> (agent name, the function tool offered to the model), one per handoff."""
    reason = {"type": "string", "description": "why, and what the next agent should do"}
    tools: Handoffs = {}
    for agent in handoffs:
        name = handoff_tool_name(agent)
        function = {
            "name": name,
            "description": f"Hand the conversation over to the {agent} agent.",
            "parameters": {"type": "object", "properties": {"reason": reason}},
        }
        tools[name] = (agent, {"type": "function", "function": function})
    return tools


def _fence(body: str, info: str = "") -> str:
    # A fence longer than any backtick run inside, so file contents cannot close it early.
    longest = run = 0
    for char in body:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{info}\n{body}\n{ticks}"


def _file_block(file: FileInput) -> str:
    if file.text is not None:
        return f"File {file.name}:\n{_fence(file.text)}"
    if file.url:
        return f"File {file.name} ({file.media_type or 'unknown type'}) at {file.url}, not fetched."
    size = len(file.raw or b"")
    return f"File {file.name} ({file.media_type or 'binary'}, {size} bytes) is not text and is not shown."


def _shown(data: dict[str, Any]) -> dict[str, Any] | None:
    """A data part as the model reads it: a handoff envelope only for its findings (its text says the rest)."""
    if set(data) != {"handoff"} or not isinstance(data["handoff"], dict):
        return data
    findings = data["handoff"].get("findings")
    return {"handoff_findings": findings} if findings else None


def user_content(call: AgentCall) -> str:
    """The caller's message as one text: the text, then each file and data part as a fenced block.

    A handoff envelope (``orchestration.handoff``) comes as readable text and as a data part; the model
    gets it once: the text, and of the data part only the findings, which the text only counts.
    """
    blocks = [call.text] if call.text else []
    blocks += [_file_block(f) for f in call.files]
    shown = [part for part in map(_shown, call.data) if part is not None]
    blocks += [_fence(json.dumps(d, indent=2, ensure_ascii=False), "json") for d in shown]
    return "\n\n".join(blocks)


def call_max_tokens(call: AgentCall, configured: int | None) -> int | None:
    """The ``max_tokens`` of this call: the agent's, or less when the request asks for a compact answer."""
    asked = [
        part["compact"]["max_tokens"]
        for part in call.data
        if isinstance(part.get("compact"), dict) and isinstance(part["compact"].get("max_tokens"), int)
    ]
    limits = [limit for limit in (configured, *asked) if limit is not None and limit > 0]
    return min(limits) if limits else None


def build_messages(system_prompt: str, call: AgentCall) -> list[dict[str, Any]]:
    """System prompt, earlier turns of the task (user/assistant), then the current message."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for turn in call.history:
        if turn.text:
            messages.append({"role": "user" if turn.role == "user" else "assistant", "content": turn.text})
    messages.append({"role": "user", "content": user_content(call)})
    return messages


# -- the streamed answer -----------------------------------------------------------------------


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined; comments and other fields skipped)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
            data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


@dataclass
class _ToolCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class _Answer:
    """What the stream has said so far."""

    text: list[str] = field(default_factory=list)
    tool_calls: dict[int, _ToolCall] = field(default_factory=dict)
    tokens: tuple[int, int] | None = None  # (prompt, completion), from the usage chunk
    finished: bool = False
    refused: bool = False  # a ``refusal`` delta, or finish_reason content_filter
    logprobs: list[float] = field(default_factory=list)  # of the text's tokens, when the endpoint sends them

    def add_tool_delta(self, index: int, name: str, arguments: str, call_id: str = "") -> None:
        # Tool calls arrive in pieces keyed by index: the id and name first, the arguments spread over many deltas.
        call = self.tool_calls.setdefault(index, _ToolCall())
        call.id = call.id or call_id
        call.name += name
        call.arguments += arguments


class _TextArtifact:
    """Streams text deltas as chunks of one artifact, holding one back so the last can say so."""

    def __init__(self, emit: Emitter, name: str) -> None:
        self._emit, self._name = emit, name
        self._held: str | None = None
        self._started = False
        self._separate = False

    def separate(self) -> None:
        """The next chunk starts a new paragraph (the model's next turn), if any text came before."""
        self._separate = self._started or self._held is not None

    async def add(self, chunk: str) -> None:
        if self._separate:
            chunk, self._separate = PARAGRAPH + chunk, False
        if self._held is not None:
            await self._send(self._held, last=False)
        self._held = chunk

    async def close(self) -> None:
        if self._held is not None:
            await self._send(self._held, last=True)
            self._held = None

    async def _send(self, text: str, *, last: bool) -> None:
        # The first chunk creates the artifact; the SDK rejects appending to one that does not exist.
        await self._emit.artifact(self._name, text=text, append=self._started, last_chunk=last)
        self._started = True


def _parse_chunk(payload: str) -> dict[str, Any]:
    try:
        chunk = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise _StreamError(f"an event that is not JSON ({exc.msg}): {payload[:80]!r}") from exc
    if not isinstance(chunk, dict):
        raise _StreamError(f"an event that is not a JSON object: {payload[:80]!r}")
    if chunk.get("error"):
        error = chunk["error"]
        raise _StreamError(f"an error: {error.get('message', error) if isinstance(error, dict) else error}")
    return chunk


def _apply(answer: _Answer, chunk: dict[str, Any]) -> list[str]:
    """Fold one chunk into ``answer``; the text deltas it carried."""
    texts: list[str] = []
    try:
        usage = chunk.get("usage")
        if usage:
            answer.tokens = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                texts.append(str(delta["content"]))
            if delta.get("refusal"):
                texts.append(str(delta["refusal"]))
                answer.refused = True
            answer.refused = answer.refused or choice.get("finish_reason") == "content_filter"
            for token in (choice.get("logprobs") or {}).get("content") or []:
                answer.logprobs.append(float(token["logprob"]))
            for tool in delta.get("tool_calls") or []:
                function = tool.get("function") or {}
                answer.add_tool_delta(
                    int(tool.get("index", 0)),
                    function.get("name") or "",
                    function.get("arguments") or "",
                    str(tool.get("id") or ""),
                )
            answer.finished = answer.finished or bool(choice.get("finish_reason"))
    except (AttributeError, TypeError, ValueError) as exc:
        raise _StreamError(f"a chunk of unexpected shape ({type(exc).__name__}: {exc})") from exc
    answer.text += texts
    return texts


async def read_answer(response: httpx.Response, artifact: _TextArtifact) -> _Answer:
    """Consume the event stream, streaming text to ``artifact``; raises ``_StreamError`` if malformed."""
    answer = _Answer()
    async for payload in sse_data(response.aiter_lines()):
        if payload.strip() == "[DONE]":
            answer.finished = True
            break
        for text in _apply(answer, _parse_chunk(payload)):
            await artifact.add(text)
    if not answer.finished:
        raise _StreamError("a stream that ended before the answer finished")
    return answer


# -- the runtime -------------------------------------------------------------------------------


def _retry_after(response: httpx.Response) -> float | None:
    """The answer's ``Retry-After`` in seconds (a number, or an HTTP date), None when it has none."""
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return parse_retry_after(value, time.time())


async def _error_message(response: httpx.Response) -> str:
    body = (await response.aread()).decode("utf-8", "replace")
    try:
        error = json.loads(body).get("error", body)
        body = str(error.get("message", error) if isinstance(error, dict) else error)
    except (ValueError, AttributeError):
        pass
    return body.strip()[:_ERROR_BODY_CHARS]


@dataclass(frozen=True)
class Offer:
    """What the model may call in one task: the handoffs its caller may make, and the file's tools.

    ``refused`` holds, by tool name, why the caller may not make each other handoff of the file:
    they are not offered, and a call to one is answered with the reason.
    """

    handoffs: Handoffs = field(default_factory=dict)
    tools: dict[str, Tool] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Every function name offered."""
        return [*self.handoffs, *self.tools]


class ChatCompletionsRuntime:
    """One agent's ``(call, emit) -> Reply`` over an OpenAI-compatible chat-completions endpoint."""

    def __init__(self, name: str, runtime: LlmRuntime, endpoint: ModelEndpoint, toolbox: Toolbox | None = None) -> None:
        self.name = name
        self.endpoint = endpoint
        self._system_prompt = runtime.system_prompt
        self._handoffs = handoff_tools(runtime.handoffs)
        self._toolbox = toolbox
        self._max_rounds = runtime.max_tool_rounds
        self._max_tokens = runtime.max_tokens
        self._schema = runtime.output_schema
        self._retry_after_max_s = runtime.retry_after_max_s
        self._escalation = runtime.escalation
        self.stronger = stronger_endpoint(endpoint, runtime)

    def offer(self, call: AgentCall, tools: dict[str, Tool]) -> Offer:
        """The handoffs ``call``'s caller may make (the others refused, with the reason) and ``tools``."""
        handoffs: Handoffs = {}
        refused: dict[str, str] = {}
        for name, (agent, tool) in self._handoffs.items():
            why = call.may_call(agent)
            if why is None:
                handoffs[name] = (agent, tool)
            else:
                refused[name] = why
        return Offer(handoffs, tools, refused)

    def request_body(
        self,
        messages: list[dict[str, Any]],
        offer: Offer | None = None,
        *,
        endpoint: ModelEndpoint | None = None,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        """The chat-completions request for ``messages`` to ``endpoint``, offering what ``offer`` holds."""
        endpoint = endpoint or self.endpoint
        body: dict[str, Any] = {
            "model": endpoint.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        offer = offer or Offer()
        offered = [tool for _, tool in offer.handoffs.values()] + [t.definition() for t in offer.tools.values()]
        if offered:
            body["tools"] = offered
        if endpoint.temperature is not None:
            body["temperature"] = endpoint.temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if self._escalation is not None and "low-confidence" in self._escalation.when and endpoint is self.endpoint:
            body["logprobs"] = True  # the answer's token probabilities, for its confidence (``llm_tiers``)
        return body

    async def __call__(self, call: AgentCall, emit: Emitter) -> Reply:
        """Ask the model, running the tools it calls; a reply, a handoff, or a failure saying what went wrong.

        With an ``escalation``, a poor answer is asked again of the stronger model (``adapters.llm_tiers``).
        """
        await emit.progress(f"{self.name}: thinking")
        try:
            toolset = await self._toolbox.tools() if self._toolbox else Toolset({})
        except McpServerError as exc:
            return self._failed(f"out of service: {exc.detail}")
        if toolset.unavailable:
            labels = ", ".join(server.label for server in toolset.unavailable)
            await emit.progress(f"{self.name}: answering without the tools of MCP server(s) {labels} (unavailable)")
        offer, note = self.offer(call, toolset.tools), toolset.note()
        max_tokens = call_max_tokens(call, self._max_tokens)
        reply, judged = await self._converse(call, emit, offer, self.endpoint, max_tokens, note)
        policy, stronger = self._escalation, self.stronger
        answered = reply.state == "completed" and not reply.is_handoff
        why = why_escalate(policy, judged, self._schema) if policy and stronger and answered else ""
        if policy is not None and stronger is not None and why:
            await emit.progress(f"{self.name}: escalating to {stronger.model}: {why}")
            cheap_usage = reply.usage
            limit = call_max_tokens(call, policy.max_tokens or self._max_tokens)
            reply, judged = await self._converse(call, emit, offer, stronger, limit, note)
            reply = replace(reply, usage=add_usage(cheap_usage, reply.usage))
            answered = reply.state == "completed" and not reply.is_handoff
        problem = schema_problem(self._schema, judged.text) if answered else ""
        if problem:
            return self._failed(f"the answer does not match output_schema ({problem})", reply.usage)
        await emit.progress(
            f"{self.name}: handing off to {reply.handoff_to}" if reply.is_handoff else f"{self.name}: done"
        )
        return reply

    async def _converse(
        self,
        call: AgentCall,
        emit: Emitter,
        offer: Offer,
        endpoint: ModelEndpoint,
        max_tokens: int | None,
        note: str = "",
    ) -> tuple[Reply, Judged]:
        """One model's answer to ``call``, tool rounds and all, and what it showed of its quality.

        ``note`` (which tools are unavailable now) follows the system prompt.
        """
        system_prompt = PARAGRAPH.join(text for text in (self._system_prompt, note) if text)
        messages = build_messages(system_prompt, call)
        artifact = _TextArtifact(emit, Reply.artifact_name)  # a new answer replaces the artifact (no append)
        texts: list[str] = []
        calls: list[_ToolCall] = []
        tokens: tuple[int, int] | None = None
        refused = False
        logprobs: list[float] = []
        try:
            for turn in range(self._max_rounds + 1):
                artifact.separate()
                body = self.request_body(messages, offer, endpoint=endpoint, max_tokens=max_tokens)
                answer = await self._ask(body, artifact, endpoint, emit)
                if isinstance(answer, Reply):  # the rounds before count
                    return (replace(answer, usage=self._usage(tokens, endpoint)) if tokens else answer), Judged("")
                tokens = _add(tokens, answer.tokens)
                texts.append("".join(answer.text))
                refused, logprobs = refused or answer.refused, logprobs + answer.logprobs
                calls = [answer.tool_calls[i] for i in sorted(answer.tool_calls)]
                if not calls or any(c.name in offer.handoffs for c in calls):
                    break
                if turn == self._max_rounds:
                    reason = f"the model still called tools after {self._max_rounds} rounds (max_tool_rounds)"
                    return self._failed(reason, self._usage(tokens, endpoint)), Judged("")
                messages += await self._run_tools(calls, offer, "".join(answer.text), emit)
        finally:
            await artifact.close()
        reply = self._reply(PARAGRAPH.join(t for t in texts if t), calls, offer, self._usage(tokens, endpoint))
        final = texts[-1] if texts else ""
        return reply, Judged(final, refused, confidence(final, logprobs))

    async def _ask(
        self, body: dict[str, Any], artifact: _TextArtifact, endpoint: ModelEndpoint, emit: Emitter
    ) -> _Answer | Reply:
        """One streamed request, a 429/503's ``Retry-After`` waited out (up to ``retry_after_max_s``, twice)."""
        for attempt in range(RETRY_AFTER_TRIES + 1):
            try:
                return await self._ask_once(body, artifact, endpoint)
            except RetryableModelError as exc:
                wait = exc.retry_after
                if wait is None or wait > self._retry_after_max_s or attempt == RETRY_AFTER_TRIES:
                    raise
                await emit.progress(f"{self.name}: model busy (HTTP {exc.status_code}); retrying in {wait:g}s")
                await asyncio.sleep(wait)  # the endpoint asked for this wait
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _ask_once(
        self, body: dict[str, Any], artifact: _TextArtifact, endpoint: ModelEndpoint
    ) -> _Answer | Reply:
        """One streamed request: the model's answer, or a failed reply saying why there is none."""
        headers = {"Accept": "text/event-stream"}
        if endpoint.api_key:
            headers["Authorization"] = f"Bearer {endpoint.api_key}"
        timeout = httpx.Timeout(endpoint.timeout_s, connect=min(CONNECT_TIMEOUT_S, endpoint.timeout_s))
        try:
            async with (
                httpx.AsyncClient(timeout=timeout) as http,
                http.stream("POST", endpoint.completions_url, json=body, headers=headers) as r,
            ):
                return await self._refusal(r) or await read_answer(r, artifact)
        except httpx.TimeoutException:
            return self._failed(
                f"model endpoint {self.endpoint.host} did not answer within {self.endpoint.timeout_s:g}s"
            )
        except httpx.ConnectError as exc:
            return self._failed(f"model endpoint {self.endpoint.host} is unreachable ({_cause(exc)})")
        except httpx.TransportError as exc:
            return self._failed(f"connection to model endpoint {self.endpoint.host} failed: {_cause(exc)}")
        except _StreamError as exc:
            return self._failed(f"model endpoint {self.endpoint.host} sent {exc}")

    async def _run_tools(self, calls: list[_ToolCall], offer: Offer, text: str, emit: Emitter) -> list[dict[str, Any]]:
        """Run the model's tool calls in order; the assistant turn and one tool message per call."""
        ids = [call.id or f"call_{i}" for i, call in enumerate(calls)]
        turn: dict[str, Any] = {"role": "assistant", "content": text or None}
        turn["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for i, c in zip(ids, calls, strict=True)
        ]
        answers = [turn]
        for call_id, call in zip(ids, calls, strict=True):
            outcome = await self._run_tool(call, offer, emit)
            answers.append({"role": "tool", "tool_call_id": call_id, "content": outcome.for_model})
        return answers

    async def _run_tool(self, call: _ToolCall, offer: Offer, emit: Emitter) -> ToolOutcome:
        tool = offer.tools.get(call.name)
        if tool is None:  # never run: the model is told why, and what it may call instead
            offered = ", ".join(offer.names) or "none"
            refusal = offer.refused.get(call.name)
            if refusal is not None:
                logger.warning("agent %s: the model called %s, refused: %s", self.name, call.name, refusal)
                why = f"{call.name} is refused for this task's caller ({refusal})"
                return ToolOutcome(f"{why}; do not call it again. The tools are: {offered}", is_error=True)
            logger.warning("agent %s: the model called %s, which it was not offered", self.name, call.name)
            return ToolOutcome(f"there is no tool {call.name!r} here; the tools are: {offered}", is_error=True)
        try:
            arguments = json.loads(call.arguments) if call.arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return ToolOutcome(f"the arguments of {call.name} are not JSON ({exc.msg})", is_error=True)
        if not isinstance(arguments, dict):
            return ToolOutcome(f"the arguments of {call.name} must be a JSON object", is_error=True)
        await emit.progress(f"{self.name}: calling {call.name}")
        outcome = await tool.run(arguments, lambda text: emit.progress(f"{self.name}: {text}"))
        if outcome.is_error:
            await emit.progress(f"{self.name}: {call.name} failed: {outcome.text}")
        return outcome

    async def _refusal(self, response: httpx.Response) -> Reply | None:
        """A failed reply for a refused request; raises ``RetryableModelError`` for 429 and 5xx."""
        status = response.status_code
        if status < 300:
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("text/event-stream"):
                return self._failed(f"model endpoint {self.endpoint.host} answered {content_type!r}, not a stream")
            return None
        if status in (401, 403) and not self.endpoint.api_key:
            return self._failed(f"model endpoint wants an API key (HTTP {status}); set SWITCHBOARD_LLM_API_KEY")
        if status in (401, 403):
            return self._failed(f"model endpoint rejected the API key (HTTP {status})")
        detail = self._redact(await _error_message(response))
        if status == 429 or status >= 500:
            raise RetryableModelError(
                f"model endpoint {self.endpoint.host} answered HTTP {status}: {detail}",
                status_code=status,
                retry_after=_retry_after(response),
            )
        return self._failed(f"model endpoint {self.endpoint.host} refused the request (HTTP {status}): {detail}")

    def _reply(self, text: str, calls: list[_ToolCall], offer: Offer, usage: Usage | None) -> Reply:
        handoff = next((c for c in calls if c.name in offer.handoffs), None)
        if handoff is None:
            return Reply(text=text, usage=usage)
        try:
            arguments = json.loads(handoff.arguments) if handoff.arguments.strip() else {}
        except json.JSONDecodeError:
            return self._failed(f"the model called {handoff.name} with arguments that are not JSON", usage)
        note = arguments.get("reason", "") if isinstance(arguments, dict) else ""
        agent = offer.handoffs[handoff.name][0]
        return Reply(text=text, usage=usage, handoff_to=agent, handoff_note=str(note))

    def _usage(self, tokens: tuple[int, int] | None, endpoint: ModelEndpoint | None = None) -> Usage | None:
        if tokens is None:
            return None
        return Usage(tokens[0], tokens[1], (endpoint or self.endpoint).cost(*tokens))

    def _failed(self, reason: str, usage: Usage | None = None) -> Reply:
        logger.warning("agent %s: %s", self.name, reason)
        return Reply(text=f"{self.name}: {reason}", state="failed", usage=usage)

    def _redact(self, text: str) -> str:
        # An endpoint may echo the key back in its error; it never reaches a reply or a log.
        return text.replace(self.endpoint.api_key, "***") if self.endpoint.api_key else text


def _add(tokens: tuple[int, int] | None, more: tuple[int, int] | None) -> tuple[int, int] | None:
    if more is None:
        return tokens
    return more if tokens is None else (tokens[0] + more[0], tokens[1] + more[1])


def stronger_endpoint(endpoint: ModelEndpoint, runtime: LlmRuntime) -> ModelEndpoint | None:
    """The escalation tier's endpoint: the same server, the stronger model, its own prices."""
    policy = runtime.escalation
    if policy is None:
        return None
    return replace(
        endpoint,
        model=policy.model,
        input_price_per_1k=_first(policy.input_price_per_1k, endpoint.input_price_per_1k),
        output_price_per_1k=_first(policy.output_price_per_1k, endpoint.output_price_per_1k),
    )


def _cause(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def build(spec: AgentSpec, host: Host) -> AgentExecutor:
    """The executor for an ``llm`` agent, on the endpoint the host's settings name.

    Raises ``RuntimeLoadError`` naming the missing setting when no model is configured.
    """
    runtime = spec.runtime
    if not isinstance(runtime, LlmRuntime):
        raise RuntimeLoadError(f"{spec.name}: runtime '{spec.runtime.kind}' is not an llm runtime")
    endpoint = endpoint_for(spec, host.settings)
    long_names = [n for n in map(handoff_tool_name, runtime.handoffs) if len(n) > MAX_TOOL_NAME]
    if long_names:
        raise RuntimeLoadError(f"{spec.name}: handoff tool names over {MAX_TOOL_NAME} characters: {long_names}")
    toolbox = Toolbox(spec, runtime, host.mcp_clients)
    for server in toolbox.servers:
        missing = missing_program(server)
        if missing is not None:
            raise RuntimeLoadError(f"{spec.name}: MCP server {server.label}: no program {missing!r}")
        _probe(spec.name, server, toolbox, host.mcp_clients)

    def calls(caller: Identity | None, agent: str) -> str | None:
        # looked up per call: the policy and the agents are the host's at run time. An agent not hosted is
        # not refused here, as the engine does not: a transfer to it fails as an unknown agent.
        target = host.spec(agent)
        return host.auth.may_call(caller, target) if target is not None else None

    chat = ChatCompletionsRuntime(spec.name, runtime, endpoint, toolbox or None)
    return RuntimeExecutor(spec.name, chat, calls=calls)


def _probe(agent: str, server: McpToolsSpec, toolbox: Toolbox, pool: McpClientPool) -> None:
    """Ask ``server`` for its tools at start: one that lacks an allow-listed tool stops the start (as an ``mcp``
    agent's does); one that cannot be reached leaves its tools out until it answers."""
    try:
        listed = pool.list_tools_now(server)
    except McpServerError as exc:
        toolbox.wait_for(server, exc.detail)
        return
    try:
        toolbox.check(server, listed)
    except McpServerError as exc:
        raise RuntimeLoadError(f"{agent}: {exc.detail}") from exc
