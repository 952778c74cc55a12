"""A NUL character (U+0000) in a request's ids, filters or metadata is invalid params, on every binding.

PostgreSQL's text columns cannot hold NUL (SQLite's can): a task id, context id, push config id or
caller that holds one, sent to PostgreSQL, fails the query, and the SDK answered that failure as an
internal error (-32603, 500, INTERNAL) carrying the database's own message. No id this gateway mints
holds NUL, so such a request names nothing that exists; it is refused here, before any query, with
the field that holds it, the same on SQLite and PostgreSQL.

A part's content (``Part``: text, data, file name, its metadata) is left alone: it is stored inside
the task's protobuf bytes, never in a text column, and kept as it was sent.

``refuse_nul`` runs in the SDK's ``validate_request_params`` (see ``required_fields.use_in_sdk_handlers``),
the check every request handler method makes first, and first in the gateway's own overrides of them.
"""

from __future__ import annotations

import functools

from a2a.types.a2a_pb2 import Part
from a2a.utils.errors import InvalidParamsError
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

NUL = "\x00"
_KEPT_AS_SENT = frozenset({Part.DESCRIPTOR.full_name})
_STRING, _MESSAGE, _REPEATED_STRING, _REPEATED_MESSAGE, _MAP = range(5)


@functools.cache
def _plan(descriptor: Descriptor) -> tuple[tuple[str, int], ...]:
    """(name, kind) of the fields of ``descriptor`` that hold a string at some depth (parts excepted)."""
    fields = []
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            fields.append((field.name, _REPEATED_STRING if field.is_repeated else _STRING))
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.full_name not in _KEPT_AS_SENT:
            if field.message_type.GetOptions().map_entry:
                fields.append((field.name, _MAP))
            else:
                fields.append((field.name, _REPEATED_MESSAGE if field.is_repeated else _MESSAGE))
    return tuple(fields)


def _holder(msg: Message, at: str = "") -> str | None:
    """The path of the first field of ``msg`` holding NUL (a map's key counts), or None."""
    for name, kind in _plan(msg.DESCRIPTOR):
        value = getattr(msg, name)
        path = f"{at}.{name}" if at else name
        if kind == _STRING:
            if NUL in value:
                return path
        elif kind == _REPEATED_STRING:
            for i, item in enumerate(value):
                if NUL in item:
                    return f"{path}[{i}]"
        elif kind == _MESSAGE:
            if msg.HasField(name) and (found := _holder(value, path)) is not None:
                return found
        elif kind == _REPEATED_MESSAGE:
            for i, item in enumerate(value):
                if (found := _holder(item, f"{path}[{i}]")) is not None:
                    return found
        else:
            for key in value:
                if isinstance(key, str) and NUL in key:
                    return f"{path} (a key)"
                item = value[key]
                if isinstance(item, Message):
                    if (found := _holder(item, f"{path}[{key!r}]")) is not None:
                        return found
                elif isinstance(item, str) and NUL in item:
                    return f"{path}[{key!r}]"
    return None


def refuse_nul(msg: Message) -> None:
    """Raise the SDK's ``InvalidParamsError`` naming the field of request ``msg`` that holds NUL, if one does."""
    path = _holder(msg)
    if path is not None:
        raise InvalidParamsError(
            message=f"{path} holds a NUL character (U+0000), which no id, filter or metadata of this gateway may hold"
        )
