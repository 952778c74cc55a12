"""The ``python`` runtime: your own Python agent, by import string.

The entry point may be an ``AgentExecutor`` subclass (full control of the task), a factory returning
one or a runtime (called with the file's ``options``), or a function of the ``(call, emit)`` contract
(``gateway.runtime``), async or plain: a plain function runs in a worker thread, with an ``emit``
whose methods it calls without ``await``. A function may take ``(call)`` alone, and may return a
``Reply``, a string (the reply's text) or a dict or list (the reply's data). A plain function runs
on the event loop's default thread pool, and a cancel ends its task at once but cannot stop its
thread, which runs to its end (what it emits after the cancel is dropped): write it ``async`` when
it must stop on cancel.

The module is looked for beside the agent file first, so ``agent.py`` next to ``agents/my-agent.yaml``
is found as ``agent:run`` without setting ``PYTHONPATH``; errors name the agent file.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from a2a.server.agent_execution import AgentExecutor

from gateway.auth.policy import Identity
from gateway.errors import RuntimeLoadError
from gateway.hosting.executor import RuntimeExecutor
from gateway.hosting.runtimes import Host
from gateway.runtime import AgentCall, Emitter, Reply, Runtime
from gateway.spec import AgentSpec, PythonRuntime

EMIT_TIMEOUT_S = 30.0
"""How long a plain function's ``emit`` call waits for the event loop before it gives up."""


def _where(spec: AgentSpec | None) -> str:
    if spec is None:
        return ""
    return f"{spec.where}: "


def _beside(module_name: str, folder: Path) -> Path | None:
    """The file of top-level module ``module_name`` in ``folder``, if there is one."""
    top = module_name.partition(".")[0]
    for candidate in (folder / f"{top}.py", folder / top / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _import_module(module_name: str, spec: AgentSpec | None) -> Any:
    folder = spec.file.parent.resolve() if spec is not None and spec.file is not None else None
    local = _beside(module_name, folder) if folder is not None else None
    if local is not None and str(folder) not in sys.path:
        # Appended, not prepended: the standard library and installed packages keep their names.
        sys.path.append(str(folder))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # SyntaxError, or anything the module raises while it is imported
        why = f"{type(exc).__name__}: {exc}"
        raise RuntimeLoadError(f"{_where(spec)}cannot import module {module_name!r}: {why}") from exc
    top = sys.modules[module_name.partition(".")[0]]
    if local is not None and Path(getattr(top, "__file__", "") or "").resolve() != local.resolve():
        raise RuntimeLoadError(
            f"{_where(spec)}module {module_name!r} beside the agent file is shadowed by {top.__file__}; rename it"
        )
    return module


def import_string(target: str, spec: AgentSpec | None = None) -> Any:
    """Resolve ``module:attr.path`` to the object it names, looking beside ``spec``'s file first.

    Errors (``RuntimeLoadError``) name the agent file and say what failed.
    """
    module_name, _, attr_path = target.partition(":")
    obj: Any = _import_module(module_name, spec)
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError as exc:
            raise RuntimeLoadError(f"{_where(spec)}module {module_name!r} has no attribute {attr_path!r}") from exc
    return obj


class ThreadEmitter:
    """The ``emit`` a plain function gets: the same calls as ``Emitter``, without ``await``, from its thread."""

    def __init__(self, emit: Emitter, loop: asyncio.AbstractEventLoop) -> None:
        self._emit, self._loop = emit, loop

    def _wait(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(EMIT_TIMEOUT_S)

    def progress(self, text: str) -> None:
        """Report a working status update with ``text``."""
        self._wait(self._emit.progress(text))

    def artifact(self, name: str, **kwargs: Any) -> None:
        """Emit (or append to) an artifact; the keywords of ``Emitter.artifact``."""
        self._wait(self._emit.artifact(name, **kwargs))


def as_reply(value: object, name: str) -> Reply:
    """A function's result as a ``Reply``: a ``Reply`` as is, a string as its text, a dict or list as its data."""
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply(text=value)
    if isinstance(value, dict | list):
        return Reply(data=value)
    if value is None:
        return Reply()
    return Reply(text=f"{name} returned {type(value).__name__}, not a Reply, str, dict or list", state="failed")


def _arity(function: Callable[..., object]) -> int:
    """How many positional parameters ``function`` takes (at most 2 counted)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return 2
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return 2
    return min(2, sum(1 for p in parameters if p.kind in kinds))


def as_runtime(function: Callable[..., object], name: str) -> Runtime:
    """``function`` (async or plain, taking ``(call, emit)`` or ``(call)``) as a ``(call, emit) -> Reply`` runtime."""
    arity = _arity(function)

    if inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(type(function).__call__):

        async def run_async(call: AgentCall, emit: Emitter) -> Reply:
            result = await (function(call, emit) if arity == 2 else function(call))  # type: ignore[misc]
            return as_reply(result, name)

        return run_async

    async def run_in_thread(call: AgentCall, emit: Emitter) -> Reply:
        thread_emit = ThreadEmitter(emit, asyncio.get_running_loop())
        args = (call, thread_emit) if arity == 2 else (call,)
        result = await asyncio.to_thread(function, *args)
        if inspect.isawaitable(result):
            result = await result
        return as_reply(result, name)

    return run_in_thread


def _is_runtime_function(target: object, options: dict[str, Any]) -> bool:
    """A function taking a call (no options given): the runtime itself, not a factory of one."""
    if options or inspect.isclass(target) or not callable(target):
        return False
    return _arity(target) >= 1


def build(spec: AgentSpec, host: Host) -> AgentExecutor:
    """The executor for a ``python`` agent (see the module for what the entry point may be).

    Calls check a reuse of another agent's logic against the caller (``AgentCall.may_reuse``).
    """
    runtime = spec.runtime
    assert isinstance(runtime, PythonRuntime)
    target = import_string(runtime.entrypoint, spec)

    def reuse(caller: Identity | None, entrypoint: str) -> str | None:
        # looked up per call: the policy and the other agents are the host's at run time
        return host.auth.may_reuse(caller, entrypoint, host.registry)

    if _is_runtime_function(target, runtime.options):
        return RuntimeExecutor(spec.name, as_runtime(target, spec.name), reuse)
    if callable(target):  # an AgentExecutor subclass, or a factory of an executor or a runtime
        try:
            built = target(**runtime.options)
        except TypeError as exc:
            raise RuntimeLoadError(f"{_where(spec)}{runtime.entrypoint}(**options) failed: {exc}") from exc
        if isinstance(built, AgentExecutor):
            return built
        if callable(built):
            return RuntimeExecutor(spec.name, as_runtime(built, spec.name), reuse)
    raise RuntimeLoadError(
        f"{_where(spec)}{runtime.entrypoint} is neither an AgentExecutor nor a function of a call; "
        "write `async def run(call, emit) -> Reply` (or a plain `def run(call)` returning a string)"
    )
