"""Hashpipe's socket feed (SPEC §7) through the Rust server configured by
the Python server's own daq_data_server_config.json (uds on, file polling
off): a separate Python process pushes frames the way Hashpipe's
snapshot.c does ([2-byte big-endian module id][PFF frame] into one unix
socket per data product), and panoseti-grpc 0.3.5's own client receives them pixel for pixel.

Runs in the pytest process of test_panoseti_*.py (it imports
panoseti_grpc, whose generated module clashes with our stubs)."""

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from conftest import ROOT
from panoseti_grpc.daq_data.client import DaqDataClient

# The Python server's simulation pushes these products for module 224.
PRODUCTS = {"img16": (2048, "module_1"), "ph256": (512, "module_1")}
MODULE = 224

PUSHER = r'''
import socket, sys, time
from pathlib import Path

template, module, fixtures = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
products = {"img16": 2048, "ph256": 512}

def frames(dp, image_bytes):
    data = next(fixtures.glob(f"*.dp_{dp}.*module_1.*.pff")).read_bytes()
    header = data.index(b"\n\n*") + 3
    size = header + image_bytes
    return [data[i:i + size] for i in range(0, len(data) - size + 1, size)]

conns = {}
feeds = {dp: frames(dp, n) for dp, n in products.items()}
n = 0
while True:
    for dp, fr in feeds.items():
        if dp not in conns:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(template.format(dp_name=dp))
                conns[dp] = s
            except OSError:
                continue
        try:
            conns[dp].sendall(module.to_bytes(2, "big") + fr[n % len(fr)])
        except OSError:
            conns.pop(dp).close()
    n += 1
    time.sleep(0.01)
'''


def python_server_config():
    spec = importlib.util.find_spec("panoseti_grpc")
    assert spec is not None, "panoseti-grpc 0.3.5 must be installed (see .ci/run)"
    pkg = Path(next(iter(spec.submodule_search_locations)))
    return json.loads((pkg / "daq_data" / "config" / "daq_data_server_config.json").read_text())


def fixture_images(dp, image_bytes):
    data = next((ROOT / "fixtures").glob(f"*.dp_{dp}.*module_1.*.pff")).read_bytes()
    header = data.index(b"\n\n*") + 3
    size = header + image_bytes
    return {data[i + header:i + size] for i in range(0, len(data) - size + 1, size)}


def test_hashpipe_push_reaches_a_client(make_server, tmp_path):
    config = python_server_config()
    uds = config["acquisition_methods"]["uds"]
    assert uds["enabled"] and not config["acquisition_methods"]["filesystem_poll"]["enabled"]
    # The one change: the sockets in this test's directory, not /tmp's
    # default that every server on the machine shares.
    template = str(tmp_path / "hp_{dp_name}.sock")
    uds["socket_path_template"] = template
    config_file = tmp_path / "daq_data_server_config.json"
    config_file.write_text(json.dumps(config))
    server = make_server("--config", str(config_file))

    pusher = subprocess.Popen([sys.executable, "-c", PUSHER, template, str(MODULE), str(ROOT / "fixtures")])
    try:
        # A real DAQ node's data_dir, whose Hashpipe is the pusher.
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        (data_dir / "daq_hashpipe_pid").write_text(str(pusher.pid))
        daq_config = {"daq_nodes": [{"ip_addr": server.unix, "data_dir": str(data_dir)}]}
        pushed = {dp: fixture_images(dp, n) for dp, (n, _) in PRODUCTS.items()}
        seen = {}
        deadline = time.time() + 20
        with DaqDataClient(daq_config, None) as client:
            assert client.init_hp_io(server.unix, {"update_interval_seconds": 0.01, "simulate_daq": False,
                                                   "force": True, "module_ids": []})
            for image in client.stream_images(server.unix, True, True, 0.0, timeout=30):
                dp = image["file"].removeprefix("uds_")
                assert image["file"] in ("uds_img16", "uds_ph256"), image["file"]
                assert image["module_id"] == MODULE
                # The client hands movie pixels as uint16 and pulse heights
                # as int16; either way the bytes are the pushed frame's.
                pixels = np.asarray(image["image_array"]).astype("<u2" if dp == "img16" else "<i2").tobytes()
                assert pixels in pushed[dp], f"{dp} frame {image['frame_number']}: pixels never pushed"
                seen[dp] = seen.get(dp, 0) + 1
                if all(seen.get(dp, 0) >= 10 for dp in PRODUCTS) or time.time() > deadline:
                    break
        assert all(seen.get(dp, 0) >= 10 for dp in PRODUCTS), seen
    finally:
        pusher.terminate()
        pusher.wait(timeout=10)
