"""Bundled offline code-review specialists: security, complexity, style (ruff) and the review lead.

Each module exposes ``run(call, emit) -> Reply`` (see ``gateway.runtime``); they work without a
model or network access, so a fresh gateway has real agents to route to.
"""
