"""The committed JSON Schema of agent files, with each built-in pattern's ``options`` in it.

``gateway.spec.json_schema`` describes the file format; this adds, to the workflow runtime, one
``if``/``then`` per built-in pattern (``if: {pattern: {const: NAME}}``, ``then: {options: ...}``)
holding that pattern's options model plus the engine's own options (``fallbacks``), so an editor
checks a workflow's options as the gateway will when it loads the file. Patterns of other packages
are checked at load only (their schemas are not part of this project's).

Regenerate: ``python -m gateway.orchestration.file_schema > agent_cards/schema.json``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from gateway.orchestration.catalog import builtin_names, pattern
from gateway.orchestration.workflows import ENGINE_OPTIONS, engine_options_schema
from gateway.spec import json_schema

REF_TEMPLATE = "#/$defs/{model}"


def options_schema(name: str, defs: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of pattern ``name``'s options (its definitions added to ``defs``)."""
    model = pattern(name).options
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    for key, value in schema.pop("$defs", {}).items():
        if defs.setdefault(key, value) != value:
            raise ValueError(f"two definitions named {key!r} differ (pattern {name})")
    engine = engine_options_schema(REF_TEMPLATE)
    clash = set(schema.get("properties", {})) & ENGINE_OPTIONS
    if clash:
        raise ValueError(f"pattern {name} has options the engine takes for itself: {sorted(clash)}")
    schema["properties"] = {**schema.get("properties", {}), **engine["properties"]}
    return schema


def agent_file_schema() -> dict[str, Any]:
    """The agent file schema as committed in ``agent_cards/schema.json``."""
    schema = json_schema()
    defs: dict[str, Any] = schema["$defs"]
    rules = []
    for name in builtin_names():
        options = options_schema(name, defs)
        key = f"{options.get('title', name)}"
        defs[key] = options
        rules.append(
            {
                "if": {"properties": {"pattern": {"const": name}}, "required": ["pattern"]},
                "then": {"properties": {"options": {"$ref": REF_TEMPLATE.format(model=key)}}},
            }
        )
    defs["WorkflowRuntime"]["allOf"] = rules
    return schema


if __name__ == "__main__":
    sys.stdout.write(json.dumps(agent_file_schema(), indent=2, sort_keys=True) + "\n")
