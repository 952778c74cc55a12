"""The ``python`` runtime: an in-process async callable or an a2a ``AgentExecutor``, by import string."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from a2a.server.agent_execution import AgentExecutor

from gateway.auth.policy import Identity
from gateway.errors import RuntimeLoadError
from gateway.hosting.executor import RuntimeExecutor
from gateway.hosting.runtimes import Host
from gateway.spec import AgentSpec, PythonRuntime


def import_string(target: str) -> Any:
    """Resolve ``module:attr.path`` to the object it names."""
    module_name, _, attr_path = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeLoadError(f"cannot import module {module_name!r}: {exc}") from exc
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError as exc:
            raise RuntimeLoadError(f"{module_name!r} has no attribute {attr_path!r}") from exc
    return obj


def build(spec: AgentSpec, host: Host) -> AgentExecutor:
    """The executor for a ``python`` agent.

    The entry point may be an ``AgentExecutor`` subclass (full control of the task), a factory
    returning one, or an async ``(call, emit) -> Reply`` function bridged by ``RuntimeExecutor``,
    whose calls check a reuse of another agent's logic against the caller (``AgentCall.may_reuse``).
    """
    runtime = spec.runtime
    assert isinstance(runtime, PythonRuntime)
    target = import_string(runtime.entrypoint)

    def reuse(caller: Identity | None, entrypoint: str) -> str | None:
        # looked up per call: the policy and the other agents are the host's at run time
        return host.auth.may_reuse(caller, entrypoint, host.registry)

    if inspect.isclass(target) and issubclass(target, AgentExecutor):
        return target(**runtime.options)
    if inspect.iscoroutinefunction(target):
        return RuntimeExecutor(spec.name, target, reuse)
    if callable(target):
        built = target(**runtime.options)
        if isinstance(built, AgentExecutor):
            return built
        if callable(built):
            return RuntimeExecutor(spec.name, built, reuse)
    raise RuntimeLoadError(f"{runtime.entrypoint} is neither an AgentExecutor nor an async (call, emit) callable")
