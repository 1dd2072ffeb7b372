"""Our .proto against panoseti-grpc 0.3.5's own generated descriptor.

test_wire.py talks to the server with stubs built from our .proto, so a
field number or type that drifted from upstream would go unnoticed there.
This compares every message (nested too), enum and enum value, every
field's number, type, label, type name and packed-ness, and every method's
types and streaming flags, with what the Python clients were generated from.

Ours is compiled by grpc_tools' protoc in a subprocess into a
FileDescriptorSet and loaded into a private descriptor pool; upstream's is
taken from panoseti_grpc.generated.daq_data_pb2 (which lives in protobuf's
default pool; hence this file runs in the panoseti pytest process). The
descriptor the release server serves over reflection is compared too."""

import subprocess
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, empty_pb2, struct_pb2, timestamp_pb2

from conftest import ROOT

PROTO_DIR = ROOT / "daqdata-proto" / "proto"


def compile_set(proto_dir, out):
    """protoc, in its own process, into a FileDescriptorSet with imports."""
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}", "--include_imports",
         f"--descriptor_set_out={out}", "daq_data.proto"],
        check=True,
    )
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(out.read_bytes())
    return fds


def private_file(protos, name="daq_data.proto"):
    """Loads FileDescriptorProtos into a fresh pool (not the default one)."""
    pool = descriptor_pool.DescriptorPool()
    for p in protos:
        pool.Add(p)
    return pool.FindFileByName(name)


def ours(tmp_path, proto_dir=PROTO_DIR):
    return private_file(compile_set(proto_dir, tmp_path / "ours.pb").file)


def upstream():
    from panoseti_grpc.generated import daq_data_pb2
    protos = []
    for module in (struct_pb2, timestamp_pb2, empty_pb2, daq_data_pb2):
        p = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(p)
        protos.append(p)
    return private_file(protos)


def describe(file):
    """Every wire-relevant fact of a file, as {path: value}."""
    facts = {"file.name": file.name, "file.package": file.package,
             "file.dependencies": sorted(d.name for d in file.dependencies)}

    def enum(e):
        facts[f"enum {e.full_name}"] = "present"
        for v in e.values:
            facts[f"enum {e.full_name}.{v.name}"] = v.number

    def message(m):
        facts[f"message {m.full_name}"] = "present"
        for f in m.fields:
            facts[f"field {f.full_name}"] = {
                "number": f.number,
                "type": descriptor_pb2.FieldDescriptorProto.Type.Name(f.type),
                "label": descriptor_pb2.FieldDescriptorProto.Label.Name(f.label),
                "type_name": (f.message_type or f.enum_type).full_name if (f.message_type or f.enum_type) else "",
                "packed": f.is_packed,
                "presence": f.has_presence,
                "oneof": f.containing_oneof.name if f.containing_oneof else "",
                "json_name": f.json_name,
            }
        for n in m.nested_types:
            message(n)
        for e in m.enum_types:
            enum(e)

    for m in file.message_types_by_name.values():
        message(m)
    for e in file.enum_types_by_name.values():
        enum(e)
    for s in file.services_by_name.values():
        facts[f"service {s.full_name}"] = "present"
        for m in s.methods:
            facts[f"rpc {m.full_name}"] = {
                "input": m.input_type.full_name,
                "output": m.output_type.full_name,
                "client_streaming": m.client_streaming,
                "server_streaming": m.server_streaming,
            }
    return facts


# What SPEC §2 adds to 0.3.5's protocol: the Status RPC (upstream's, after
# 0.3.5) and StreamHashpipeStatus with the fields of upstream's two empty
# messages (§9). Additions only: nothing of 0.3.5 may change or go.
SPEC_ADDITIONS = {
    "rpc daqdata.DaqData.Status",
    "message daqdata.StatusResponse",
    "field daqdata.StatusResponse.hp_io_initialized",
    "field daqdata.StatusResponse.message",
    "rpc daqdata.DaqData.StreamHashpipeStatus",
    "field daqdata.StreamHashpipeStatusRequest.update_interval_seconds",
    "field daqdata.StreamHashpipeStatusResponse.name",
    "field daqdata.StreamHashpipeStatusResponse.read_at",
    "field daqdata.StreamHashpipeStatusResponse.cards",
    "field daqdata.StreamHashpipeStatusResponse.stale",
    "field daqdata.StreamHashpipeStatusResponse.message",
}


def differences(a, b):
    """Every fact that differs, except SPEC §2's additions to ours."""
    return [f"{k}: ours {a.get(k, 'MISSING')!r} != upstream {b.get(k, 'MISSING')!r}"
            for k in sorted(set(a) | set(b))
            if a.get(k, "MISSING") != b.get(k, "MISSING")
            and not (k in SPEC_ADDITIONS and k not in b)]


def test_the_additions_are_what_spec_says(tmp_path):
    """Status: bool 1, string 2, a unary viewer RPC on Empty; the Hashpipe
    status stream with the field numbers of SPEC §9."""
    a = describe(ours(tmp_path))
    assert SPEC_ADDITIONS <= set(a)
    assert a["rpc daqdata.DaqData.Status"] == {
        "input": "google.protobuf.Empty", "output": "daqdata.StatusResponse",
        "client_streaming": False, "server_streaming": False}
    assert a["field daqdata.StatusResponse.hp_io_initialized"]["number"] == 1
    assert a["field daqdata.StatusResponse.hp_io_initialized"]["type"] == "TYPE_BOOL"
    assert a["field daqdata.StatusResponse.message"]["number"] == 2
    assert a["field daqdata.StatusResponse.message"]["type"] == "TYPE_STRING"
    assert a["rpc daqdata.DaqData.StreamHashpipeStatus"]["server_streaming"] is True
    fields = {name: (a[f"field daqdata.StreamHashpipeStatusResponse.{name}"]["number"],
                     a[f"field daqdata.StreamHashpipeStatusResponse.{name}"]["type"])
              for name in ("name", "read_at", "cards", "stale", "message")}
    assert fields == {"name": (1, "TYPE_STRING"), "read_at": (2, "TYPE_MESSAGE"),
                      "cards": (3, "TYPE_MESSAGE"), "stale": (4, "TYPE_BOOL"),
                      "message": (5, "TYPE_STRING")}


def test_our_proto_matches_upstream_descriptor(tmp_path):
    a, b = describe(ours(tmp_path)), describe(upstream())
    assert differences(a, b) == []
    # The comparison saw the whole protocol, not an empty shell.
    assert b["field daqdata.PanoImage.image_array"]["packed"] is True
    assert b["enum daqdata.PanoImage.Type.MOVIE"] == 2
    assert b["rpc daqdata.DaqData.UploadImages"]["client_streaming"] is True
    assert sum(k.startswith("field ") for k in b) == 24
    assert sum(k.startswith("rpc ") for k in b) == 4


def test_a_drifted_copy_of_our_proto_is_caught(tmp_path):
    """The comparison can fail: each edit of a copy of our .proto is reported."""
    source = (PROTO_DIR / "daq_data.proto").read_text()
    edits = {
        "frame_number": ("uint32 frame_number = 7;", "uint32 frame_number = 9;"),
        "PanoImage.Type.MOVIE": ("MOVIE = 2;", "MOVIE = 3;"),
        "image_array": ("repeated uint32 image_array = 3 [packed = true];",
                        "repeated uint32 image_array = 3 [packed = false];"),
        "rpc daqdata.DaqData.StreamImages": ("returns (stream StreamImagesResponse)", "returns (StreamImagesResponse)"),
        "update_interval_seconds": ("double update_interval_seconds = 3;", "float update_interval_seconds = 3;"),
        "InitHpIoRequest.module_ids": ("repeated uint32 module_ids = 6;", "uint32 module_ids = 6;"),
    }
    b = describe(upstream())
    for i, (what, (old, new)) in enumerate(edits.items()):
        assert source.count(old) == 1, old
        d = tmp_path / f"drift{i}"
        d.mkdir()
        (d / "daq_data.proto").write_text(source.replace(old, new))
        diff = differences(describe(ours(d, d)), b)
        assert diff and all(what in line for line in diff), (what, diff)


def test_the_descriptor_the_server_reflects_matches_upstream(server):
    """What the release binary serves over reflection (the Python clients'
    reflect_services reads it) is upstream's protocol too."""
    import grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
    with grpc.insecure_channel(server.tcp) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        served = describe(pool.FindFileContainingSymbol("daqdata.DaqData"))
    assert differences(served, describe(upstream())) == []
