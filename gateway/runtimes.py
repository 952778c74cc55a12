"""Resolves an agent's ``runtime.kind`` to the adapter that builds its executor.

Adapters are named by import string, as uvicorn names its protocol classes, so a runtime
(and its optional dependencies) is imported only when an agent uses it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from a2a.server.agent_execution import AgentExecutor

from gateway.errors import RuntimeLoadError
from gateway.spec import AgentSpec

ADAPTERS: dict[str, str] = {
    "python": "adapters.python:build",
    "llm": "adapters.llm:build",
}

Builder = Callable[[AgentSpec], AgentExecutor]


def build_executor(spec: AgentSpec) -> AgentExecutor:
    """The executor for ``spec``, built by the adapter of its runtime kind."""
    target = ADAPTERS.get(spec.runtime.kind)
    if target is None:
        raise RuntimeLoadError(f"{spec.name}: runtime '{spec.runtime.kind}' is not available in this version")
    module_name, _, attr = target.partition(":")
    builder = cast(Builder, getattr(importlib.import_module(module_name), attr))
    return builder(spec)
