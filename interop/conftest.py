"""Starts the release server (and the daqsim binary) for the Python tests."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
SERVER = Path(os.environ.get("DAQDATA_SERVER_BIN", TARGET / "release" / "daqdata-server"))
DAQSIM = Path(os.environ.get("DAQSIM_BIN", TARGET / "release" / "daqsim"))


_channels = []


def channel(target):
    """A grpc channel that is closed when a test's servers stop, so that
    their graceful shutdown does not wait out its grace period for idle
    test clients."""
    import grpc
    _channels.append(grpc.insecure_channel(target))
    return _channels[-1]


def close_channels():
    while _channels:
        _channels.pop().close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A daqdata-server process listening on TCP and a unix socket."""

    def __init__(self, tmp: Path, *extra: str, port=None):
        # A given port: a restarted server where its clients expect it.
        self.port = port or free_port()
        self.sock = tmp / "daq_data.sock"
        self.log = open(tmp / "server.log", "w")
        if "--config" not in extra:
            # Hashpipe's sockets (made while hp_io runs on real data) in the
            # test's own directory, not /tmp's default that every server shares.
            config = tmp / "hashpipe_sockets.toml"
            config.write_text(f'[hashpipe_sockets]\npath_template = "{tmp}/hp_{{dp_name}}.sock"\n')
            extra = ("--config", str(config), *extra)
        if "--metrics-listen" not in extra:
            # Metrics off unless a test scrapes them: the default port is
            # shared by every server on the machine.
            extra = (*extra, "--metrics-listen", "")
        self.proc = subprocess.Popen(
            [str(SERVER), "--listen", f"127.0.0.1:{self.port}", "--listen", f"unix://{self.sock}", *extra],
            stderr=self.log,
            stdout=self.log,
        )
        deadline = time.time() + 30
        while not (self.sock.exists() and self._tcp_open()):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"server did not start; see {tmp / 'server.log'}")
            time.sleep(0.05)

    def _tcp_open(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    @property
    def tcp(self):
        return f"127.0.0.1:{self.port}"

    @property
    def unix(self):
        return f"unix://{self.sock}"

    def stop(self):
        close_channels()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def make_server(tmp_path):
    made = []

    def make(*extra):
        d = tmp_path / f"server{len(made)}"
        d.mkdir()
        s = Server(d, *extra)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def daq_tree(tmp_path):
    """A live fake DAQ tree written by the daqsim binary."""
    out = tmp_path / "daq"
    log = open(tmp_path / "daqsim.log", "w")
    proc = subprocess.Popen([str(DAQSIM), "--replay", str(ROOT / "fixtures"), "--out", str(out), "--rate", "100"],
                            stdout=log, stderr=log)
    deadline = time.time() + 30

    def writing():
        # Every fixture stream (5) has a file with a frame in it.
        files = list(out.glob("module_*/*.pffd/*.pff"))
        return len(files) >= 5 and all(f.stat().st_size > 0 for f in files)

    while not writing():
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"daqsim did not start; see {tmp_path / 'daqsim.log'}")
        time.sleep(0.05)
    yield out
    proc.terminate()
    proc.wait(timeout=15)
    log.close()
