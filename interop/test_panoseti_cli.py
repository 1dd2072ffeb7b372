"""panoseti-grpc 0.3.5's own command line, unchanged, against the release
server: `python -m panoseti_grpc.daq_data.cli DAQ_CONFIG NET_CONFIG --host H`
with --ping, --list-hosts, --init, --plot-view, --plot-speed, --plot-phdist,
as an observatory user runs it (headless: MPLBACKEND=Agg).

The CLI dials port 50051 for a host name, but takes a `unix://` address as
it is, so it reaches this test's server through the server's unix socket.
Its --reflect-services is broken upstream and is left out.

A plotting mode passes when it is still running after 5 s with no traceback
and no gRPC error in its output, exits cleanly on SIGTERM (its Ctrl-C path),
and images reached it: the server logs "StreamImages ended ... images=N"
when the stream closes, and --plot-speed also prints its own packet counts."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

RUN_SECONDS = 5
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# What the CLI and its client library print when something went wrong.
ERRORS = re.compile(r"Traceback|RpcError|StatusCode\.|Failed to|failed with a critical error|"
                    r"terminated with an expected disconnection|Client exiting|\bERROR\b|\bCRITICAL\b")


@pytest.fixture
def cli(server, tmp_path):
    """Config files for a one-node observatory whose node is `server`."""
    host = server.unix
    (tmp_path / "daq_config.json").write_text(json.dumps({
        "head_node_data_dir": "", "head_node_ip_addr": "localhost",
        "daq_nodes": [{"ip_addr": host, "user_name": "", "data_dir": "", "module_ids": ""}]}))
    (tmp_path / "network_config.json").write_text(json.dumps({
        "daq_nodes": [{"ip_addr": host, "port_forwarding": {"status": False, "gw_ip": "localhost", "port": 22}}]}))
    (tmp_path / "hp_io_config.json").write_text(json.dumps({
        "data_dir": "", "update_interval_seconds": 0.1, "force": True, "simulate_daq": True, "module_ids": [],
        "comments": "track a simulated run"}))
    return tmp_path


def command(cfg, *args, daq_config="daq_config.json"):
    return [sys.executable, "-m", "panoseti_grpc.daq_data.cli", str(cfg / daq_config),
            str(cfg / "network_config.json"), *args]


def environment():
    # Headless matplotlib; a wide console so rich does not wrap lines.
    return {**os.environ, "MPLBACKEND": "Agg", "COLUMNS": "300", "PYTHONUNBUFFERED": "1"}


def run_once(cfg, *args, **kw):
    """A mode that does its job and exits: its output, after checking it is clean."""
    # cwd: the CLI's logger writes daq_data/logs/ under the working directory.
    p = subprocess.run(command(cfg, *args, **kw), cwd=cfg, env=environment(), capture_output=True, text=True,
                       timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert not ERRORS.search(out), out
    return out


def run_for_a_while(cfg, server, *args):
    """A plotting mode: alive after RUN_SECONDS, then SIGTERM. Returns (output,
    images the server sent to it)."""
    log = cfg / "cli.log"
    with open(log, "w") as f:
        p = subprocess.Popen(command(cfg, "--host", server.unix, *args), cwd=cfg, env=environment(),
                             stdout=f, stderr=subprocess.STDOUT)
        try:
            time.sleep(RUN_SECONDS)
            alive = p.poll() is None
            p.send_signal(signal.SIGTERM)
            code = p.wait(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    out = log.read_text()
    assert alive, f"{args} exited within {RUN_SECONDS} s:\n{out}"
    assert code == 0, out
    assert not ERRORS.search(out), out
    return out, images_streamed(server)


def images_streamed(server):
    """Images the server sent on the one stream it served, from its log."""
    log = server.sock.parent / "server.log"
    deadline = time.time() + 10
    while True:
        ended = re.findall(r"StreamImages ended .*images=(\d+)", ANSI.sub("", log.read_text()))
        if ended or time.time() > deadline:
            break
        time.sleep(0.1)
    assert len(ended) == 1, f"expected one ended stream in {log}: {ended}"
    return int(ended[0])


def init(cfg, server):
    out = run_once(cfg, "--host", server.unix, "--init", str(cfg / "hp_io_config.json"))
    assert f"host='{server.unix}': init_hp_io_response.success=True" in out, out


def test_ping(cli, server):
    out = run_once(cli, "--host", server.unix, "--ping")
    assert f"PING host='{server.unix}':  success" in out, out


def test_list_hosts_tells_live_from_dead(cli, server):
    dead = f"unix://{cli / 'nobody.sock'}"
    (cli / "two_nodes.json").write_text(json.dumps({"daq_nodes": [
        {"ip_addr": server.unix, "data_dir": ""}, {"ip_addr": dead, "data_dir": ""}]}))
    out = run_once(cli, "--list-hosts", daq_config="two_nodes.json")
    assert dict(re.findall(r"'(unix://[^']+)': (True|False)", out)) == {server.unix: "True", dead: "False"}, out


def test_init_starts_a_simulated_run_that_streams(cli, server):
    init(cli, server)
    from panoseti_grpc.daq_data.client import DaqDataClient
    with DaqDataClient(str(cli / "daq_config.json"), str(cli / "network_config.json")) as client:
        image = next(iter(client.stream_images(server.unix, True, True, 0.1)))
    assert image["file"].startswith("start_") and image["file"].endswith(".pff"), image["file"]


def test_plot_view(cli, server):
    init(cli, server)
    # Asks --refresh-period (1 s) as its interval, movie and pulse height.
    out, images = run_for_a_while(cli, server, "--plot-view")
    assert images > 0, out


def test_plot_speed(cli, server):
    # Asks update_interval_seconds = -1: "as fast as hp_io updates".
    init(cli, server)
    out, images = run_for_a_while(cli, server, "--plot-speed")
    printed = [int(n) for n in re.findall(r"(\d+) pkts / ", out)]
    assert printed and min(printed) > 0, out
    assert images >= sum(printed), (images, printed)


def test_plot_phdist(cli, server):
    # Pulse-height only, update_interval_seconds = -1.
    init(cli, server)
    out, images = run_for_a_while(cli, server, "--plot-phdist")
    assert images > 0, out
