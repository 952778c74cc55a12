"""What the dashboard's tests share: the bundled agents with ``echo`` behind auth, and the callers' keys."""

from __future__ import annotations

import shutil
from pathlib import Path

from gateway.auth.api_keys import api_key_line, new_api_key
from gateway.settings import bundled_agents_dir

KEYS = {"alice": new_api_key(), "bob": new_api_key(), "ops": new_api_key()}
SCOPES = {"ops": ["switchboard:operator"]}


def key_lines() -> list[str]:
    """The ``auth_api_keys`` setting admitting alice, bob and ops (an operator)."""
    return [api_key_line(name, key, SCOPES.get(name, [])) for name, key in KEYS.items()]


def protected_agents(into: Path) -> Path:
    """The bundled agents, with ``echo`` protected like the rest (it is open for conformance runs).

    An open agent's tasks belong to the anonymous caller whoever sends them; the tests need
    echo's long and asking tasks to be one caller's.
    """
    folder = into / "agents"
    shutil.copytree(bundled_agents_dir(), folder, ignore=shutil.ignore_patterns("llm"))
    echo = folder / "echo.yaml"
    echo.write_text(echo.read_text(encoding="utf-8").replace("security: none\n", ""), encoding="utf-8")
    return folder
