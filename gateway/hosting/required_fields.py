"""The SDK's check of REQUIRED fields (``a2a.utils.proto_utils.validate_proto_required_fields``), planned once per type.

The SDK's check reads every field's options (``GetOptions()``, the ``field_behavior``
extension) on every message and recurses into every sub-message, a relayed message's metadata
``Struct`` included: 0.2 ms for a ``SendMessageRequest`` carrying a hop entry here. This one
reads the options once per message type, and skips sub-messages whose type holds no REQUIRED
field at any depth (``Struct``, ``Value``); it finds the same violations and raises the same
``InvalidParamsError`` (``tests/test_required_fields.py`` compares the two). ``use_in_sdk_handlers``
makes the SDK's request handlers check with it too (a gateway does, from ``create_app``; the bare
SDK server of the benchmarks does not).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from a2a.utils.errors import InvalidParamsError
from a2a.utils.proto_utils import ValidationDetail
from google.api.field_behavior_pb2 import FieldBehavior, field_behavior
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway.hosting.nul_text import refuse_nul

_SCALAR, _MESSAGE, _REPEATED, _MAP = range(4)
_NOT_EMPTY = "Field must contain at least one element."


@dataclass(frozen=True)
class _Field:
    name: str
    required: bool
    repeated: bool
    has_presence: bool
    default: object
    nested: int  # _SCALAR (nothing to look into), _MESSAGE, _REPEATED (messages) or _MAP (message values)


@functools.cache
def _plan(descriptor: Descriptor) -> tuple[_Field, ...]:
    """The fields of ``descriptor`` worth a look: required ones, and those that may hold a required one."""
    fields = []
    for field in descriptor.fields:
        required = FieldBehavior.REQUIRED in field.GetOptions().Extensions[field_behavior]
        repeated = field.is_repeated
        nested = _SCALAR
        if field.type == FieldDescriptor.TYPE_MESSAGE and _may_hold_required(field.message_type):
            if not repeated:
                nested = _MESSAGE
            elif field.message_type.GetOptions().map_entry:
                nested = _MAP
            else:
                nested = _REPEATED
        if required or nested != _SCALAR:
            default = None if repeated or field.type == FieldDescriptor.TYPE_MESSAGE else field.default_value
            fields.append(_Field(field.name, required, repeated, field.has_presence, default, nested))
    return tuple(fields)


def _may_hold_required(descriptor: Descriptor) -> bool:
    """Whether a message of this type can hold a REQUIRED field at any depth (a map's entry: its value)."""
    return _holds(descriptor, frozenset())


def _holds(descriptor: Descriptor, seen: frozenset[str]) -> bool:
    if descriptor.full_name in seen:
        return False  # a cycle adds nothing new
    seen = seen | {descriptor.full_name}
    for field in descriptor.fields:
        if FieldBehavior.REQUIRED in field.GetOptions().Extensions[field_behavior]:
            return True
        if field.type == FieldDescriptor.TYPE_MESSAGE and _holds(field.message_type, seen):
            return True
    return False


def _errors(msg: Message) -> list[ValidationDetail]:
    errors: list[ValidationDetail] = []
    for field in _plan(msg.DESCRIPTOR):
        value = getattr(msg, field.name)
        if field.required:
            if field.repeated:
                if not value:
                    errors.append(ValidationDetail(field=field.name, message=_NOT_EMPTY))
            elif field.has_presence:
                if not msg.HasField(field.name):
                    errors.append(ValidationDetail(field=field.name, message="Field is required."))
            elif value == field.default:
                errors.append(ValidationDetail(field=field.name, message="Field is required."))
        if field.nested == _MESSAGE:
            if msg.HasField(field.name):
                _nest(errors, field.name, _errors(value))
        elif field.nested == _REPEATED:
            for i, item in enumerate(value):
                _nest(errors, f"{field.name}[{i}]", _errors(item))
        elif field.nested == _MAP:
            for key, item in value.items():
                _nest(errors, f"{field.name}[{key}]", _errors(item))
    return errors


def _nest(errors: list[ValidationDetail], prefix: str, inner: list[ValidationDetail]) -> None:
    for sub in inner:
        errors.append(
            ValidationDetail(field=f"{prefix}.{sub['field']}" if sub["field"] else prefix, message=sub["message"])
        )


def validate_required_fields(msg: Message) -> None:
    """Raise the SDK's ``InvalidParamsError`` when a REQUIRED field of ``msg`` (at any depth) is missing or empty."""
    errors = _errors(msg)
    if errors:
        raise InvalidParamsError(message="Validation failed", data={"errors": errors})


def check_request(msg: Message) -> None:
    """What the gateway checks of every request first: its REQUIRED fields, then no NUL (``hosting.nul_text``)."""
    validate_required_fields(msg)
    refuse_nul(msg)


def use_in_sdk_handlers() -> None:
    """Make the SDK's ``validate_request_params`` decorator check with ``check_request``.

    The decorator looks the check up in its module on every call, so this takes effect at once, for
    handlers built before it too. ``a2a.utils.proto_utils`` keeps the SDK's own function.
    """
    from a2a.server.request_handlers import request_handler

    request_handler.validate_proto_required_fields = check_request  # type: ignore[assignment]
