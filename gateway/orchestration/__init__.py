"""Orchestration: patterns as plain async functions over a Run, and the engine that runs them."""
