"""Write the A2A ``.proto`` files of this folder from the descriptors compiled into the installed a2a-sdk.

The gateway serves gRPC with the a2a-sdk's generated code, so the wire contract is whatever that
code was compiled from. This script prints the same contract back as ``.proto`` source (comments
are not in a compiled descriptor, so none are printed), and ``tests/test_proto.py`` compiles the
files with ``protoc`` and checks that they give the SDK's descriptors field for field. After an
SDK upgrade, run ``python proto/render.py`` and review the diff: it is the change on the wire.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import a2a.compat.v0_3.a2a_v0_3_pb2 as a2a_v0_3_pb2
import a2a.types.a2a_pb2 as a2a_pb2
from google.api import annotations_pb2, client_pb2, field_behavior_pb2  # noqa: F401  (registers the options)
from google.protobuf import descriptor_pb2, text_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

HERE = Path(__file__).parent
# (module compiled into the SDK, file written here)
RENDERED = ((a2a_pb2, "a2a.proto"), (a2a_v0_3_pb2, "a2a_v0_3.proto"))

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    _F.TYPE_DOUBLE: "double",
    _F.TYPE_FLOAT: "float",
    _F.TYPE_INT64: "int64",
    _F.TYPE_UINT64: "uint64",
    _F.TYPE_INT32: "int32",
    _F.TYPE_FIXED64: "fixed64",
    _F.TYPE_FIXED32: "fixed32",
    _F.TYPE_BOOL: "bool",
    _F.TYPE_STRING: "string",
    _F.TYPE_BYTES: "bytes",
    _F.TYPE_UINT32: "uint32",
    _F.TYPE_SFIXED32: "sfixed32",
    _F.TYPE_SFIXED64: "sfixed64",
    _F.TYPE_SINT32: "sint32",
    _F.TYPE_SINT64: "sint64",
}


def descriptor_of(module: object) -> descriptor_pb2.FileDescriptorProto:
    """The ``FileDescriptorProto`` a generated ``*_pb2`` module was compiled from."""
    return descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)  # type: ignore[attr-defined]


def _value(field: FieldDescriptor, value: object) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return "{ " + text_format.MessageToString(value, as_one_line=True) + " }"  # type: ignore[arg-type]
    if field.type == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.values_by_number[value].name  # type: ignore[index]
    if field.type == FieldDescriptor.TYPE_STRING:
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "true" if value else "false"
    return str(value)


def _options(options: Message, skip: tuple[str, ...] = ()) -> list[str]:
    """Each option set in ``options`` as ``name = value`` (an extension's name in parentheses)."""
    out = []
    for field, value in options.ListFields():
        if field.name in skip:
            continue
        name = f"({field.full_name})" if field.is_extension else field.name
        values = value if field.is_repeated else [value]
        out.extend(f"{name} = {_value(field, item)}" for item in values)
    return out


def _default_json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _type_name(field: descriptor_pb2.FieldDescriptorProto) -> str:
    return _SCALARS.get(field.type) or field.type_name


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def line(self, text: str = "") -> None:
        self.lines.append(("  " * self.depth + text) if text else "")

    def block(self, head: str, body: Iterator[None]) -> None:
        self.line(head + " {")
        self.depth += 1
        for _ in body:
            pass
        self.depth -= 1
        self.line("}")


def _field(
    w: _Writer, field: descriptor_pb2.FieldDescriptorProto, maps: dict[str, descriptor_pb2.DescriptorProto]
) -> None:
    entry = maps.get(field.type_name)
    if entry is not None:
        key, value = entry.field
        head = f"map<{_type_name(key)}, {_type_name(value)}>"
    elif field.label == _F.LABEL_REPEATED:
        head = f"repeated {_type_name(field)}"
    elif field.proto3_optional:
        head = f"optional {_type_name(field)}"
    else:
        head = _type_name(field)
    options = _options(field.options)
    if field.HasField("json_name") and field.json_name != _default_json_name(field.name):
        options.append(f'json_name = "{field.json_name}"')
    suffix = f" [{', '.join(options)}]" if options else ""
    w.line(f"{head} {field.name} = {field.number}{suffix};")


def _reserved(w: _Writer, ranges: list[tuple[int, int]], names: list[str], exclusive_end: bool) -> None:
    if ranges:
        parts = []
        for start, end in ranges:
            last = end - 1 if exclusive_end else end
            parts.append(str(start) if start == last else f"{start} to {last}")
        w.line(f"reserved {', '.join(parts)};")
    if names:
        w.line(f"reserved {', '.join(repr(n).replace(chr(39), chr(34)) for n in names)};")


def _enum(w: _Writer, enum: descriptor_pb2.EnumDescriptorProto) -> Iterator[None]:
    for option in _options(enum.options):
        w.line(f"option {option};")
    for value in enum.value:
        options = _options(value.options)
        suffix = f" [{', '.join(options)}]" if options else ""
        w.line(f"{value.name} = {value.number}{suffix};")
    _reserved(w, [(r.start, r.end) for r in enum.reserved_range], list(enum.reserved_name), exclusive_end=False)
    yield


def _message(w: _Writer, message: descriptor_pb2.DescriptorProto, scope: str) -> Iterator[None]:
    full = f"{scope}.{message.name}"
    maps = {f"{full}.{nested.name}": nested for nested in message.nested_type if nested.options.map_entry}
    for option in _options(message.options, skip=("map_entry",)):
        w.line(f"option {option};")
    for enum in message.enum_type:
        w.block(f"enum {enum.name}", _enum(w, enum))
    for nested in message.nested_type:
        if not nested.options.map_entry:
            w.block(f"message {nested.name}", _message(w, nested, full))
    real_oneofs = {f.oneof_index for f in message.field if f.HasField("oneof_index") and not f.proto3_optional}
    opened: int | None = None
    for field in message.field:
        index = field.oneof_index if field.HasField("oneof_index") and field.oneof_index in real_oneofs else None
        if index != opened:
            if opened is not None:
                w.depth -= 1
                w.line("}")
            if index is not None:
                w.line(f"oneof {message.oneof_decl[index].name} {{")
                w.depth += 1
            opened = index
        _field(w, field, maps)
    if opened is not None:
        w.depth -= 1
        w.line("}")
    _reserved(w, [(r.start, r.end) for r in message.reserved_range], list(message.reserved_name), exclusive_end=True)
    yield


def _service(w: _Writer, service: descriptor_pb2.ServiceDescriptorProto) -> Iterator[None]:
    for option in _options(service.options):
        w.line(f"option {option};")
    for method in service.method:
        request = ("stream " if method.client_streaming else "") + method.input_type
        response = ("stream " if method.server_streaming else "") + method.output_type
        options = _options(method.options)
        if not options:
            w.line(f"rpc {method.name}({request}) returns ({response});")
            continue
        w.line(f"rpc {method.name}({request}) returns ({response}) {{")
        w.depth += 1
        for option in options:
            w.line(f"option {option};")
        w.depth -= 1
        w.line("}")
    yield


def render(fd: descriptor_pb2.FileDescriptorProto, source: str) -> str:
    """``.proto`` source that compiles to ``fd`` (comments aside)."""
    w = _Writer()
    w.line(f"// The wire contract of {fd.package}, as compiled into {source}.")
    w.line("// Generated by proto/render.py; do not edit by hand (see proto/README.md).")
    w.line(f'syntax = "{fd.syntax or "proto2"}";')
    w.line()
    w.line(f"package {fd.package};")
    w.line()
    for dependency in fd.dependency:
        w.line(f'import "{dependency}";')
    w.line()
    for option in _options(fd.options):
        w.line(f"option {option};")
    scope = f".{fd.package}"
    for enum in fd.enum_type:
        w.line()
        w.block(f"enum {enum.name}", _enum(w, enum))
    for message in fd.message_type:
        w.line()
        w.block(f"message {message.name}", _message(w, message, scope))
    for service in fd.service:
        w.line()
        w.block(f"service {service.name}", _service(w, service))
    return "\n".join(w.lines) + "\n"


def main() -> int:
    """Write every rendered file next to this script."""
    from importlib.metadata import version

    source = f"a2a-sdk {version('a2a-sdk')}"
    for module, name in RENDERED:
        (HERE / name).write_text(render(descriptor_of(module), source))
        print(f"wrote proto/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
