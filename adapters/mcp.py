"""The ``mcp`` runtime: one tool of an MCP server, published as an A2A agent.

At start the server is asked for its tools; the agent's card gets a skill from the tool's
description and input schema unless the file gives skills. A server that lacks the tool stops
the start with the reason (a configuration error). A server that cannot be reached (missing,
exits, hangs) does not: the agent starts out of service with the reason (logged once), its card
from the file (or, without skills there, a skill named after the tool, its schema not known yet),
and comes into service when a later probe lists the tool (``McpClientPool.keep_probing``, at the
end of each out-of-service window), its skill then taken from the tool. A message becomes the
tool's arguments: its first data part that matches the input schema, else its text, as the one
string argument of a tool that takes one, or as a JSON object. Arguments that do not match the
tool's input schema are refused (invalid params) before a task exists. The call runs over the
gateway's session with the server (``gateway.hosting.mcp_clients``): its progress notifications
are status updates, an A2A cancel cancels the call (the SDK sends ``notifications/cancelled``).
While the server is out of service (it could not be probed, failed to start or exited too often)
a message is refused as unavailable, the reason in the error, before a task exists. Its text
content is the ``result`` artifact, its structured content the ``structured`` data artifact
(unless it only wraps the text, as ``{"result": ...}``); each other content block is an artifact of
its own: an image, audio or blob resource a file part (its bytes, media type and a name), a text
resource text, a resource link data; a result with ``isError`` fails the task with the tool's message.
A tool that asks its caller a question (an elicitation, as MCP's ``InputRequiredResult``) makes the
task input-required, and the follow-up on the task answers it (``adapters.mcp_elicitation``).
Each round of a call is counted, timed and traced (``gateway.telemetry.tool_calls``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import mimetypes
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import mcp_types as types
from a2a.server.agent_execution import AgentExecutor
from a2a.types.a2a_pb2 import SendMessageRequest
from a2a.utils.errors import InvalidParamsError

from adapters.mcp_elicitation import Question, UnanswerableError, answer_of, question_of
from gateway.errors import PeerUnavailableError, RuntimeLoadError
from gateway.hosting.executor import RuntimeExecutor, message_input
from gateway.hosting.mcp_clients import McpCallError, McpClientPool, McpServerError, rooted
from gateway.hosting.runtimes import Host
from gateway.runtime import AgentCall, Emitter, FileOutput, Reply
from gateway.spec import AgentSpec, McpRuntime, McpServerSpec, SkillSpec
from gateway.telemetry.tool_calls import tool_call

logger = logging.getLogger(__name__)

MAX_ROUNDS = 10
"""Rounds of one call a tool may ask to be called again with only its state (no question), before it fails."""

_TYPE_EXAMPLES: dict[str, Any] = {
    "string": "...",
    "integer": 1,
    "number": 1.5,
    "boolean": True,
    "array": [],
    "object": {},
}


def pick_tool(server: McpServerSpec, name: str, tools: tuple[types.Tool, ...]) -> types.Tool:
    """Tool ``name`` of ``tools`` (as ``server`` lists them); ``RuntimeLoadError`` when it is not there."""
    listed = {tool.name: tool for tool in tools}
    if name not in listed:
        raise RuntimeLoadError(f"MCP server {server.label} has no tool {name!r}; it has: {', '.join(listed)}")
    return listed[name]


def text_argument(schema: dict[str, Any]) -> str | None:
    """The one string property a text message fills, when the schema has exactly one (required, if any are)."""
    properties = schema.get("properties") or {}
    required = schema.get("required") or []
    candidates = required if required else list(properties)
    if len(candidates) == 1 and (properties.get(candidates[0]) or {}).get("type") == "string":
        return str(candidates[0])
    return None


_NO_CONSTRAINT = {"type", "title", "description"}
_PLAIN_OBJECT = {"type", "properties", "required", "title", "description", "additionalProperties", "$schema"}


def takes_any_string(schema: dict[str, Any], field: str | None) -> bool:
    """Whether ``{field: <any string>}`` always matches ``schema`` (nothing to check in a text message's arguments).

    True only for a plain object schema whose one required field, if any, is ``field``, a string
    without constraints (as an MCP server's ``def tool(text: str)`` declares it).
    """
    if field is None or not set(schema) <= _PLAIN_OBJECT or schema.get("type", "object") != "object":
        return False
    required = schema.get("required") or []
    spec = (schema.get("properties") or {}).get(field)
    return (
        set(required) <= {field}
        and isinstance(spec, dict)
        and set(spec) <= _NO_CONSTRAINT
        and spec.get("type") == "string"
    )


def skill_of(tool: types.Tool, server: McpServerSpec) -> SkillSpec:
    """A card skill describing ``tool``: its description, and what its input is."""
    schema = tool.input_schema
    properties: dict[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    fields = [
        f"{name} ({spec.get('type', 'any')}{', required' if name in required else ''})"
        for name, spec in properties.items()
    ]
    text_field = text_argument(schema)
    if text_field is not None:
        takes = f"Send the {text_field} as text, or a JSON object as a data part."
        examples = []
    else:
        takes = "Send a JSON object as a data part (or as text)" + (f": {', '.join(fields)}." if fields else ".")
        example = {name: _TYPE_EXAMPLES.get(str(spec.get("type"))) for name, spec in properties.items()}
        examples = [json.dumps(example)]
    description = tool.description or f"The {tool.name} tool of MCP server {server.label}."
    return SkillSpec(
        id=tool.name,
        name=tool.title or (tool.annotations.title if tool.annotations else None) or tool.name,
        description=f"{description.strip()} {takes}",
        tags=["mcp", "tool", tool.name],
        examples=examples,
        input_modes=["text/plain", "application/json"] if text_field else ["application/json", "text/plain"],
        output_modes=["text/plain", "application/json"],
    )


def unknown_skill(name: str, server: McpServerSpec) -> SkillSpec:
    """The skill of tool ``name`` while its server has not listed it (its schema is not known yet)."""
    return SkillSpec(
        id=name,
        name=name,
        description=f"The {name} tool of MCP server {server.label}; its schema is not known yet "
        "(the server has not answered since the gateway started).",
        tags=["mcp", "tool", name],
    )


class McpToolRuntime:
    """``(call, emit) -> Reply`` calling one tool of an MCP server with the message as its arguments.

    ``tool`` is None while the server has not listed it (the agent is out of service, for ``problem``).
    """

    def __init__(self, name: str, runtime: McpRuntime, tool: types.Tool | None, pool: McpClientPool) -> None:
        self.name, self._runtime, self._pool = name, runtime, pool
        self.tool: types.Tool | None = None
        self.problem = ""
        self._questions: dict[str, Question] = {}
        if tool is not None:
            self.use(tool)

    def use(self, tool: types.Tool) -> None:
        """Call ``tool`` (as its server lists it) from now on."""
        self._text_field = text_argument(tool.input_schema)
        self._validator = jsonschema.Draft202012Validator(tool.input_schema)
        self._any_text_fits = takes_any_string(tool.input_schema, self._text_field)
        self.tool = tool

    def listed(self, tools: tuple[types.Tool, ...]) -> None:
        """The server listed ``tools`` (a later probe): in service with the tool, or out for good without it."""
        try:
            self.use(pick_tool(self.server, self._runtime.tool, tools))
        except RuntimeLoadError as exc:
            self.problem = exc.detail
            logger.error("%s stays out of service: %s", self.name, exc.detail)
            return
        logger.info("%s is in service: tool %s of MCP server %s", self.name, self._runtime.tool, self.server.label)

    def _tool(self) -> types.Tool:
        if self.tool is None:  # validate_request refuses every message until then
            raise PeerUnavailableError(f"{self.name} is out of service: {self.out_of_service()}")
        return self.tool

    def arguments(self, text: str, data: tuple[dict[str, Any], ...], *, check: bool = True) -> dict[str, Any]:
        """The tool arguments a message carries; ``InvalidParamsError`` saying what to send instead.

        The first data part that matches the input schema; else the text, as the one string
        argument or as a JSON object. (A workflow step's message carries data parts of its own,
        such as ``sequential``, beside the previous step's text.) Without ``check`` the arguments
        are not checked against the schema again (``validate_request`` did, and the server will).
        """
        tool = self._tool()
        for part in data:
            if self._validator.is_valid(part):
                return dict(part)
        if self._text_field is not None and (text or not data):
            arguments: dict[str, Any] = {self._text_field: text}
            if self._any_text_fits:
                return arguments  # valid whatever the text (the schema check is ~6 us a message)
        elif data and not text.strip():
            arguments = dict(data[0])
        else:
            arguments = self._json_text(text)
        if not check:
            return arguments
        problems = sorted(self._validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
        if problems:
            where = "/".join(map(str, problems[0].absolute_path)) or "the arguments"
            raise InvalidParamsError(
                message=f"{self.name}: {where}: {problems[0].message} (the input schema of tool {tool.name})"
            )
        return arguments

    @property
    def server(self) -> McpServerSpec:
        """The MCP server the tool is on."""
        return self._runtime.server

    def out_of_service(self) -> str | None:
        """Why the agent is out of service now (its server is, or has not listed the tool yet), or None."""
        problem = self._pool.out_of_service(self._runtime.server)
        if problem is None and self.tool is None:
            problem = self._pool.connection(self._runtime.server).problem or self.problem
        return problem

    def _json_text(self, text: str) -> dict[str, Any]:
        if not text.strip():
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise InvalidParamsError(
                message=f"{self.name} takes a JSON object (tool {self._runtime.tool}'s arguments): "
                "send it as a data part or as JSON text"
            )
        return value

    def asked(self, task_id: str) -> bool:
        """Whether task ``task_id`` waits for the answer to the tool's question (its next message is that)."""
        return task_id in self._questions

    async def forget(self, task_id: str) -> None:
        """The task ended while the tool's question was open (canceled): drop the question."""
        self._questions.pop(task_id, None)

    async def __call__(self, call: AgentCall, emit: Emitter) -> Reply:
        """Call the tool; its content as artifacts, its question as input-required, or a failure with its message."""
        asked = self._questions.pop(call.task_id, None)
        responses: types.InputResponses | None = None
        state: str | None = None
        if asked is None:
            arguments = self.arguments(call.text, call.data, check=False)  # checked by validate_request
        else:
            try:
                responses = {asked.key: answer_of(asked, call.text, call.data)}
            except ValueError as exc:
                self._questions[call.task_id] = asked
                return Reply(text=f"{asked.params.message} ({exc})", state="input-required")
            arguments, state = asked.arguments, asked.request_state

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            await emit.progress(message or (f"{progress:g}/{total:g}" if total else f"{progress:g}"))

        try:
            for _ in range(MAX_ROUNDS):
                with tool_call(self.name, self.server.label, self._runtime.tool) as measured:
                    result = await self._pool.call_tool_once(
                        self._runtime.server,
                        self._runtime.tool,
                        arguments,
                        timeout_s=self._runtime.timeout_s,
                        progress=progress,
                        input_responses=responses,
                        request_state=state,
                    )
                    measured.outcome = _outcome(result)
                if isinstance(result, types.CallToolResult):
                    break
                if result.input_requests:  # a question for the caller: the task waits for the answer
                    question = question_of(result, arguments)
                    self._questions[call.task_id] = question
                    await emit.artifact("elicitation", data=question.params.requested_schema)
                    return Reply(text=question.params.message, state="input-required")
                responses, state = None, result.request_state  # only state: the tool wants to be called again
            else:
                return Reply(
                    text=f"{self.name}: tool {self._runtime.tool} did not finish in {MAX_ROUNDS} rounds", state="failed"
                )
        except (McpCallError, McpServerError) as exc:
            return Reply(text=f"{self.name}: {exc.detail}", state="failed")
        except UnanswerableError as exc:
            return Reply(text=f"{self.name}: {exc}", state="failed")
        texts = [block.text for block in result.content if isinstance(block, types.TextContent)]
        if result.is_error:
            return Reply(text=f"{self.name}: {' '.join(texts) or 'the tool failed'}", state="failed")
        others = [block for block in result.content if not isinstance(block, types.TextContent)]
        try:
            for index, block in enumerate(others, start=1):
                await emit_content(emit, f"content-{index}", block)
        except binascii.Error as exc:
            return Reply(
                text=f"{self.name}: MCP server {self.server.label} answered {self._runtime.tool} with content "
                f"that is not base64 ({exc})",
                state="failed",
            )
        text = "\n".join(texts)
        structured = result.structured_content
        if structured is not None and not _repeats(structured, text):
            await emit.artifact(
                "structured", data=structured if isinstance(structured, dict | list) else {"value": structured}
            )
        return Reply(text=text)


async def emit_content(emit: Emitter, name: str, block: types.ContentBlock) -> None:
    """Artifact ``name`` holding a content block other than text: an image, audio or blob resource as a file
    part (its bytes, media type and a name), a text resource as text, anything else (a resource link) as data."""
    if isinstance(block, types.ImageContent | types.AudioContent):
        raw = base64.b64decode(block.data, validate=True)
        await emit.artifact(name, file=FileOutput(f"{name}{_extension(block.mime_type)}", raw, block.mime_type))
    elif isinstance(block, types.EmbeddedResource) and isinstance(block.resource, types.BlobResourceContents):
        resource = block.resource
        media_type = resource.mime_type or "application/octet-stream"
        file_name = PurePosixPath(urlsplit(resource.uri).path).name or f"{name}{_extension(media_type)}"
        raw = base64.b64decode(resource.blob, validate=True)
        await emit.artifact(name, file=FileOutput(file_name, raw, media_type))
    elif isinstance(block, types.EmbeddedResource) and isinstance(block.resource, types.TextResourceContents):
        await emit.artifact(name, text=block.resource.text)
    else:
        await emit.artifact(name, data=block.model_dump(mode="json", by_alias=True, exclude_none=True))


def _outcome(result: types.CallToolResult | types.InputRequiredResult) -> str:
    """A round's outcome as ``switchboard_tool_calls_total`` counts it."""
    if isinstance(result, types.InputRequiredResult):
        return "asked"
    return "error" if result.is_error else "ok"


def _extension(media_type: str) -> str:
    return mimetypes.guess_extension(media_type.split(";")[0].strip()) or ""


def _repeats(structured: Any, text: str) -> bool:
    """Whether ``structured`` only wraps the text result (``{"result": value}``, as MCPServer wraps a plain return)."""
    if not isinstance(structured, dict) or list(structured) != ["result"]:
        return False
    value = structured["result"]
    return text == (value if isinstance(value, str) else json.dumps(value))


class McpToolExecutor(RuntimeExecutor):
    """The executor of an ``mcp`` agent: refuses a message that is not the tool's arguments, describes the tool."""

    def __init__(self, runtime: McpToolRuntime) -> None:
        super().__init__(runtime.name, runtime)
        self.tool_runtime = runtime
        self._file_skills: bool | None = None

    def validate_request(self, params: SendMessageRequest) -> None:
        """Before any task exists: unavailable while the server is out of service; invalid params for a
        message that cannot be the tool's arguments."""
        runtime = self.tool_runtime
        problem = runtime.out_of_service()
        if problem is not None:
            raise PeerUnavailableError(f"{runtime.name} is out of service: {problem}", peer=runtime.server.label)
        if params.message.task_id and runtime.asked(params.message.task_id):
            return  # the answer to the tool's question, not its arguments
        text, _, data = message_input(params.message)
        runtime.arguments(text, data)

    def describe(self, spec: AgentSpec) -> AgentSpec:
        """``spec`` with the tool's skill when the file gives none (while the tool is not listed yet, a
        skill named after it); called again when the tool comes in."""
        if self._file_skills is None:
            self._file_skills = bool(spec.skills)
        if self._file_skills:
            return spec
        runtime = spec.runtime
        assert isinstance(runtime, McpRuntime)
        tool = self.tool_runtime.tool
        skill = skill_of(tool, runtime.server) if tool is not None else unknown_skill(runtime.tool, runtime.server)
        return spec.model_copy(update={"skills": [skill]})


def build(spec: AgentSpec, host: Host) -> AgentExecutor:
    """The executor for an ``mcp`` agent; ``RuntimeLoadError`` when its server lacks the tool.

    A server that cannot be reached leaves the agent out of service until a later probe lists the tool.
    """
    runtime = spec.runtime
    if not isinstance(runtime, McpRuntime):
        raise RuntimeLoadError(f"{spec.name}: runtime '{spec.runtime.kind}' is not an mcp runtime")
    runtime = runtime.model_copy(update={"server": rooted(runtime.server, spec.file.parent if spec.file else None)})
    pool = host.mcp_clients
    try:
        tool = pick_tool(runtime.server, runtime.tool, pool.list_tools_now(runtime.server))
    except McpServerError as exc:
        tool_runtime = McpToolRuntime(spec.name, runtime, None, pool)
        tool_runtime.problem = exc.detail
        pool.wait_for(runtime.server, exc.detail, spec.name, tool_runtime.listed)
        logger.error(
            "%s starts out of service: %s; it comes into service when the server lists its tools", spec.name, exc.detail
        )
        return McpToolExecutor(tool_runtime)
    except RuntimeLoadError as exc:
        raise RuntimeLoadError(f"{spec.name}: {exc.detail}") from exc
    return McpToolExecutor(McpToolRuntime(spec.name, runtime, tool, pool))
