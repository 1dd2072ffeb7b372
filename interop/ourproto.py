"""Python stubs generated from this project's own .proto (not upstream's).

Importing this registers daq_data.proto in protobuf's default pool, as
panoseti_grpc.generated.daq_data_pb2 also does: a pytest process imports one
or the other, never both (see .ci/run)."""

import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import ROOT, channel

PROTO_DIR = ROOT / "daqdata-proto" / "proto"

_out = Path(tempfile.mkdtemp(prefix="daqdata-stubs-"))
subprocess.run(
    [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}",
     f"--python_out={_out}", f"--grpc_python_out={_out}", "daq_data.proto"],
    check=True,
)
sys.path.insert(0, str(_out))
pb = importlib.import_module("daq_data_pb2")
pb_grpc = importlib.import_module("daq_data_pb2_grpc")

MOVIE = pb.PanoImage.Type.Value("MOVIE")
PULSE_HEIGHT = pb.PanoImage.Type.Value("PULSE_HEIGHT")


def stub(target):
    return pb_grpc.DaqDataStub(channel(target))
