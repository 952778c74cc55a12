"""Data parts back to Python, with their integers.

A2A carries a data part as a protobuf ``Value``, which holds every number as a double: ``13``
goes in and ``13.0`` comes out of ``MessageToDict``. Every place the gateway reads a data part
(an agent's input, a step's output, MCP structured content, the CLI) reads it through
``data_value``, which gives back an ``int`` for each integral number a double holds exactly.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.struct_pb2 import Value

EXACT = 2**53  # past this, a double no longer holds every integer: leave such values as they came


def integral(value: Any) -> Any:
    """``value`` with every float that holds an integer exactly turned back into that ``int`` (recursively)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) <= EXACT else value
    if isinstance(value, dict):
        return {key: integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [integral(item) for item in value]
    return value


def data_value(value: Value) -> Any:
    """A data part's ``Value`` as plain Python (dict, list, str, int, float, bool, None)."""
    return integral(MessageToDict(value))
