"""proto/ holds the wire contract the gateway serves over gRPC: compiled, it is exactly the SDK's.

If an a2a-sdk upgrade changes a message, a field number, a type or an option on the wire, these
tests fail until ``python proto/render.py`` is run and the diff reviewed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import grpc_tools
import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

REPO = Path(__file__).resolve().parents[1]
PROTO = REPO / "proto"


def _render_module():
    spec = importlib.util.spec_from_file_location("proto_render", PROTO / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _render_module()


def _include_dirs() -> list[str]:
    from google.api import annotations_pb2

    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    googleapis = Path(annotations_pb2.__file__).parents[2]  # google/api/*.proto ships in googleapis-common-protos
    return [str(PROTO), str(well_known), str(googleapis)]


def _compiled(name: str, tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    out = tmp_path / f"{name}.pb"
    args = ["protoc", *(f"-I{d}" for d in _include_dirs()), f"--descriptor_set_out={out}", name]
    assert protoc.main(args) == 0, f"protoc failed on proto/{name}"
    (compiled,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return compiled


def _without_names_protoc_may_omit(fd: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """protoc leaves ``json_name`` out of a descriptor set where it is the default; the SDK's has them all."""
    fd = descriptor_pb2.FileDescriptorProto.FromString(fd.SerializeToString())
    fd.ClearField("source_code_info")

    def strip(messages):
        for message in messages:
            for field in message.field:
                if field.json_name == render._default_json_name(field.name):
                    field.ClearField("json_name")
            strip(message.nested_type)

    strip(fd.message_type)
    return fd


@pytest.mark.parametrize(("module", "name"), render.RENDERED, ids=[name for _, name in render.RENDERED])
def test_the_committed_proto_compiles_to_the_sdks_descriptor(module, name, tmp_path):
    ours = _without_names_protoc_may_omit(_compiled(name, tmp_path))
    sdks = _without_names_protoc_may_omit(render.descriptor_of(module))
    assert ours == sdks, f"proto/{name} no longer matches the installed a2a-sdk: run python proto/render.py"


@pytest.mark.parametrize(("module", "name"), render.RENDERED, ids=[name for _, name in render.RENDERED])
def test_the_committed_proto_is_what_the_renderer_writes_today(module, name):
    from importlib.metadata import version

    expected = render.render(render.descriptor_of(module), f"a2a-sdk {version('a2a-sdk')}")
    assert (PROTO / name).read_text() == expected, f"proto/{name} is stale: run python proto/render.py"


def test_a_changed_field_number_is_caught(tmp_path):
    """The comparison bites: one field number moved in the source gives a different descriptor."""
    text = (PROTO / "a2a.proto").read_text().replace("string message_id = 1 [", "string message_id = 15 [", 1)
    (tmp_path / "a2a.proto").write_text(text)
    out = tmp_path / "changed.pb"
    dirs = [str(tmp_path), *_include_dirs()[1:]]
    assert protoc.main(["protoc", *(f"-I{d}" for d in dirs), f"--descriptor_set_out={out}", "a2a.proto"]) == 0
    (changed,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    import a2a.types.a2a_pb2 as a2a_pb2

    assert _without_names_protoc_may_omit(changed) != _without_names_protoc_may_omit(render.descriptor_of(a2a_pb2))
