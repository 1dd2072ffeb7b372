#!/usr/bin/env python3
"""End-to-end benchmark of the DaqData server (run through bench-e2e.sh).

Starts daqsim (4 modules x {img16, ph256} at 1000 frames/s, restamped),
the release server tracking that tree (hp_io interval 1 ms), and for each
scenario `daqdata bench` with K streams; prints one row per scenario with
the medians of --runs runs and their spread (min..max).

A scenario named NAME@sockets gets the same frames through Hashpipe's
sockets instead of files: `daqsim --to-sockets` pushes them as Hashpipe's
snapshot.c does, into a server that tracks no files (track_files = false).

Ideal images/s = clients x modules x types / interval, capped per stream by
the write rate (1000 frames/s per module and type).

Scenarios named gw:K (SPEC 8) put a gateway in front of NODES DAQ-node
servers, each simulating one module of its own (img16 + ph256 at
NODE_RATE frames/s, tracked every 10 ms), and run K viewers at 0.1 s on
the gateway; fwd:K is what a forwarding gateway (upstream's) costs the
nodes instead: K viewers on every node at once. Their table adds each
node's CPU and its open streams (its daqdata_active_streams, read
mid-run), the number the gateway exists for.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
MODULES = [1, 2, 3, 4]
TYPES = 2
RATE = 1000.0

HP_IO = 0.001

# The gateway rig: NODES DAQ-node servers, one simulated module each.
NODES = 4
NODE_RATE = 100.0
NODE_HP_IO = 0.01

SCENARIOS = [
    # name, clients, client interval, hp_io interval
    ("1x0.1", 1, 0.1, HP_IO),
    ("10x0.01", 10, 0.01, HP_IO),
    ("100x0.05", 100, 0.05, HP_IO),
    ("10x0.001", 10, 0.001, HP_IO),
    ("1000x0.1", 1000, 0.1, HP_IO),
    # NAME@hpI: hp_io at I s. The client asks for hp_io's interval, or for "as fast as hp_io
    # updates" (0): both are served at hp_io's 0.05 s, never faster.
    ("100x0.05@hp0.05", 100, 0.05, 0.05),
    ("100x0@hp0.05", 100, 0.0, 0.05),
    # The 100x0.05 row with Prometheus scraping /metrics every second: the
    # metrics must cost nothing measurable.
    ("100x0.05+scrape", 100, 0.05, HP_IO),
    # The 100x0.05 row fed through Hashpipe's sockets: no file to read.
    ("100x0.05@sockets", 100, 0.05, HP_IO),
    ("idle", 0, None, HP_IO),
    ("upload", 1, None, HP_IO),
    # The head node (SPEC 8): K viewers at 0.1 s through a gateway, and
    # forwarded (K viewers on every node) for comparison.
    ("gw:1", 1, 0.1, NODE_HP_IO),
    ("gw:100", 100, 0.1, NODE_HP_IO),
    ("gw:1000", 1000, 0.1, NODE_HP_IO),
    ("fwd:100", 100, 0.1, NODE_HP_IO),
]


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_mib(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_for(cond, what, timeout=30):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.05)


class Rig:
    """daqsim + server, torn down on exit."""

    def __init__(self, tmp: Path, log_dir: Path, sockets=False):
        self.tmp = tmp
        tmp.mkdir(exist_ok=True)
        self.data = tmp / "daq"
        self.sock = tmp / "daq_data.sock"
        self.host = f"unix://{self.sock}"
        # Fixture module 1 holds img16 and ph256 (real Lick frames).
        modules = ",".join(f"1:{m}" for m in MODULES)
        template = tmp / "hp_{dp_name}.sock"
        source = "daqsim-sockets" if sockets else "daqsim"
        if sockets:
            # Hashpipe's socket feed: the server tracks no files; the data
            # dir only says a run is live (its pid file names the pusher).
            self.data.mkdir()
            out = ["--to-sockets", str(template), "--reconnect-seconds", "0.2"]
        else:
            out = ["--out", str(self.data), "--frames-per-file", "100000"]
        self.sim = subprocess.Popen(
            [str(BIN / "daqsim"), "--replay", str(ROOT / "fixtures"), "--modules", modules,
             "--rate", str(RATE), *out],
            stdout=open(log_dir / f"{source}.log", "w"), stderr=subprocess.STDOUT)
        if sockets:
            (self.data / "daq_hashpipe_pid").write_text(str(self.sim.pid))
        else:
            wait_for(lambda: len(list(self.data.glob("module_*/*.pffd/*.pff"))) >= len(MODULES) * TYPES,
                     "daqsim to write every module")
        # Room for the 1000-client scenario (the default, as in Python, is 100);
        # Hashpipe's sockets in this rig's directory.
        config = tmp / "server.toml"
        config.write_text("max_concurrent_rpcs = 1100\n"
                          f"track_files = {'false' if sockets else 'true'}\n"
                          f"[hashpipe_sockets]\npath_template = \"{template}\"\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.metrics = f"127.0.0.1:{s.getsockname()[1]}"
        self.server = subprocess.Popen(
            [str(BIN / "daqdata-server"), "--listen", self.host, "--config", str(config), "--log-level", "warn",
             "--metrics-listen", self.metrics],
            stdout=open(log_dir / f"server-{source}.log", "w"), stderr=subprocess.STDOUT)
        wait_for(self.sock.exists, "the server socket")
        self.hp_io = None
        self.init(HP_IO)

    def init(self, hp_io):
        """(Re)configures hp_io to track the simulated tree every `hp_io` seconds."""
        if hp_io == self.hp_io:
            return
        cfg = self.tmp / "hp_io_config.json"
        cfg.write_text(json.dumps({"data_dir": str(self.data), "update_interval_seconds": hp_io,
                                   "force": True, "simulate_daq": False, "module_ids": []}))
        subprocess.run([str(BIN / "daqdata"), "--host", self.host, "--init", str(cfg)], check=True,
                       stdout=subprocess.DEVNULL)
        self.hp_io = hp_io

    def close(self):
        for p in (self.server, self.sim):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in (self.server, self.sim):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(addr, name):
    """The value of metric `name` at /metrics on `addr`."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


class GatewayRig:
    """NODES simulating DAQ-node servers and a gateway in front of them."""

    def __init__(self, tmp: Path, log_dir: Path):
        tmp.mkdir(exist_ok=True)
        self.nodes = []
        for n in range(1, NODES + 1):
            sock = tmp / f"node{n}.sock"
            config = tmp / f"node{n}.toml"
            config.write_text("max_concurrent_rpcs = 1100\n"
                              f"[simulate]\nmodule_ids = [{n}]\nframes_per_second = {NODE_RATE}\n"
                              f"[hashpipe_sockets]\npath_template = \"{tmp}/node{n}_{{dp_name}}.sock\"\n"
                              f"[hashpipe_status]\nenabled = false\n")
            metrics = f"127.0.0.1:{free_port()}"
            proc = subprocess.Popen(
                [str(BIN / "daqdata-server"), "--listen", f"unix://{sock}", "--config", str(config),
                 "--log-level", "warn", "--metrics-listen", metrics],
                stdout=open(log_dir / f"node{n}.log", "w"), stderr=subprocess.STDOUT)
            self.nodes.append({"host": f"unix://{sock}", "sock": sock, "proc": proc, "metrics": metrics})
        for node in self.nodes:
            wait_for(node["sock"].exists, "a node's socket")
            cfg = tmp / "sim.json"
            cfg.write_text(json.dumps({"data_dir": "simulated_data_dir", "update_interval_seconds": NODE_HP_IO,
                                       "force": True, "simulate_daq": True, "module_ids": []}))
            subprocess.run([str(BIN / "daqdata"), "--host", node["host"], "--init", str(cfg)], check=True,
                           stdout=subprocess.DEVNULL)
        self.sock = tmp / "gateway.sock"
        self.host = f"unix://{self.sock}"
        config = tmp / "gateway.toml"
        config.write_text("max_concurrent_rpcs = 1100\n[hashpipe_status]\nenabled = false\n")
        upstreams = [a for node in self.nodes for a in ("--upstream", node["host"])]
        self.metrics = f"127.0.0.1:{free_port()}"
        self.server = subprocess.Popen(
            [str(BIN / "daqdata-server"), "--listen", self.host, "--config", str(config), "--log-level", "warn",
             "--metrics-listen", self.metrics, *upstreams],
            stdout=open(log_dir / "gateway.log", "w"), stderr=subprocess.STDOUT)
        wait_for(self.sock.exists, "the gateway's socket")

    def run(self, name, clients, duration, warmup):
        """K viewers on the gateway (gw:K) or on every node (fwd:K); the
        bench row plus each node's CPU % and open streams."""
        forward = name.startswith("fwd:")
        targets = [(n["host"], n["proc"].pid) for n in self.nodes] if forward else [(self.host, self.server.pid)]
        benches = [subprocess.Popen(
            [str(BIN / "daqdata"), "bench", "--host", host, "--clients", str(clients), "--interval", "0.1",
             "--duration", str(duration), "--warmup", str(warmup), "--server-pid", str(pid), "--json"],
            stdout=subprocess.PIPE, text=True) for host, pid in targets]
        time.sleep(warmup)
        c0, t0 = [proc_cpu_seconds(n["proc"].pid) for n in self.nodes], time.time()
        time.sleep(duration / 2)
        streams = [scrape(n["metrics"], "daqdata_active_streams") for n in self.nodes]
        time.sleep(duration / 2)
        c1, t1 = [proc_cpu_seconds(n["proc"].pid) for n in self.nodes], time.time()
        raws = []
        for b in benches:
            out, _ = b.communicate(timeout=duration + warmup + 120)
            if b.returncode != 0:
                sys.exit(f"{name}: daqdata bench failed")
            raws.append(json.loads(out.strip().splitlines()[-1]))
        ages = [r["frame_age_ms"] for r in raws if r["frame_age_ms"]["samples"]]
        gateway = raws[0].get("server") or {}
        return {
            "images_per_s": sum(r["images_per_second"] for r in raws),
            "ideal": clients * NODES * TYPES / 0.1,
            "age_ms": {"p50": statistics.median(a["p50"] for a in ages),
                       "p99": max(a["p99"] for a in ages)} if ages else {},
            "cpu_percent": None if forward else gateway.get("cpu_percent"),
            "peak_rss_mib": None if forward else gateway.get("peak_rss_kib", 0) / 1024,
            "node_cpu_percent": [100 * (b - a) / (t1 - t0) for a, b in zip(c0, c1)],
            "node_streams": streams,
            "errors": sum(sum(r["errors"].values()) for r in raws),
        }

    def close(self):
        procs = [self.server] + [n["proc"] for n in self.nodes]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


class Scraper:
    """GETs /metrics every second, as Prometheus would, while it runs."""

    def __init__(self, addr):
        self.url = f"http://{addr}/metrics"
        self.done = threading.Event()
        self.scrapes = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.wait(1.0):
            with urllib.request.urlopen(self.url, timeout=5) as r:
                if b"daqdata_images_sent_total" in r.read():
                    self.scrapes += 1

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.scrapes


def bench(rig, clients, interval, duration, warmup, upload=False):
    cmd = [str(BIN / "daqdata"), "bench", "--host", rig.host, "--clients", str(clients),
           "--duration", str(duration), "--warmup", str(warmup), "--server-pid", str(rig.server.pid), "--json"]
    if upload:
        cmd += ["--upload"]
    else:
        cmd += ["--interval", str(interval)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=duration + warmup + 120)
    raw = json.loads(out.stdout.strip().splitlines()[-1])
    server = raw.get("server") or {}
    return {
        "images_per_s": raw["images_per_second"],
        "age_ms": raw["frame_age_ms"] if raw["frame_age_ms"]["samples"] else {},
        "cpu_percent": server.get("cpu_percent"),
        "peak_rss_mib": server["peak_rss_kib"] / 1024 if "peak_rss_kib" in server else None,
        "errors": sum(raw["errors"].values()),
        "per_client": [raw["per_client_min_images"], raw["per_client_max_images"]],
    }


def idle(rig, duration):
    pid = rig.server.pid
    time.sleep(1)
    c0, t0 = proc_cpu_seconds(pid), time.time()
    time.sleep(duration)
    c1, t1 = proc_cpu_seconds(pid), time.time()
    return {"images_per_s": 0.0, "cpu_percent": 100 * (c1 - c0) / (t1 - t0),
            "peak_rss_mib": proc_rss_mib(pid, "VmHWM"), "errors": 0}


def ideal(clients, interval, hp_io):
    per_stream = min(1 / max(interval, hp_io), RATE)
    return clients * len(MODULES) * TYPES * per_stream


def spread(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}..{fmt.format(max(values))})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per scenario run")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--only", default="", help="comma-separated scenario names, e.g. 100x0.05,idle")
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    args = ap.parse_args()
    wanted = [s for s in SCENARIOS if not args.only or s[0] in args.only.split(",")]

    results = {name: [] for name, _, _, _ in wanted}
    log_dir = Path(tempfile.mkdtemp(prefix="bench-e2e-logs-"))
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
            rigs = {}
            try:
                for name, clients, interval, hp_io in wanted:
                    print(f"run {run + 1}/{args.runs}: {name} ...", file=sys.stderr, flush=True)
                    if name.startswith(("gw:", "fwd:")):
                        for other in list(rigs):
                            if other != "gateway":
                                rigs.pop(other).close()
                        if "gateway" not in rigs:
                            rigs["gateway"] = GatewayRig(Path(tmp) / "gateway", log_dir)
                        results[name].append(rigs["gateway"].run(name, clients, args.duration, args.warmup))
                        continue
                    sockets = name.endswith("@sockets")
                    for other in [k for k in rigs if k != sockets]:
                        rigs.pop(other).close()
                    if sockets not in rigs:
                        rigs[sockets] = Rig(Path(tmp) / ("sockets" if sockets else "files"), log_dir, sockets)
                    rig = rigs[sockets]
                    rig.init(hp_io)
                    if name == "idle":
                        r = idle(rig, args.duration)
                    elif name == "upload":
                        streaming = subprocess.Popen(
                            [str(BIN / "daqdata"), "bench", "--host", rig.host, "--clients", "1",
                             "--interval", "0.01", "--duration", str(args.duration + args.warmup + 5),
                             "--warmup", "0", "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        r = bench(rig, 1, None, args.duration, args.warmup, upload=True)
                        streaming.terminate()
                        streaming.wait()
                    else:
                        scraper = Scraper(rig.metrics) if name.endswith("+scrape") else None
                        r = bench(rig, clients, interval, args.duration, args.warmup)
                        r["ideal"] = ideal(clients, interval, hp_io)
                        if scraper and scraper.stop() < args.duration:
                            sys.exit(f"{name}: /metrics answered fewer than one scrape a second")
                    results[name].append(r)
            finally:
                for rig in rigs.values():
                    rig.close()

    machine = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True,
                             text=True).stdout.strip()
    print(f"\nmachine: {machine}, {os.cpu_count()} cores; {args.runs} run(s) of {args.duration:.0f} s; "
          f"medians (min..max); logs in {log_dir}\n")
    header = ("scenario", "images/s", "% ideal", "age p50 ms", "age p99 ms", "server CPU %", "peak RSS MiB",
              "errors")
    rows = [header]
    for name, _, _, _ in wanted:
        if name.startswith(("gw:", "fwd:")):
            continue
        rs = results[name]
        rows.append((
            name,
            spread([r.get("images_per_s") for r in rs], "{:.0f}"),
            spread([100 * r["images_per_s"] / r["ideal"] for r in rs if r.get("ideal")], "{:.1f}"),
            spread([r.get("age_ms", {}).get("p50") for r in rs], "{:.2f}"),
            spread([r.get("age_ms", {}).get("p99") for r in rs], "{:.2f}"),
            spread([r.get("cpu_percent") for r in rs], "{:.1f}"),
            spread([r.get("peak_rss_mib") for r in rs], "{:.1f}"),
            spread([r.get("errors", 0) for r in rs], "{:.0f}"),
        ))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    gateway_rows(wanted, results)
    if args.json:
        print(json.dumps(results, indent=1))


def print_table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def gateway_rows(wanted, results):
    names = [name for name, _, _, _ in wanted if name.startswith(("gw:", "fwd:"))]
    if not names:
        return
    print(f"\n{NODES} DAQ nodes x 1 simulated module (img16 + ph256, {NODE_RATE:.0f} frames/s, hp_io "
          f"{NODE_HP_IO * 1000:.0f} ms); viewers at 0.1 s; gw:K through the gateway, fwd:K on every node\n")
    rows = [("scenario", "images/s", "% ideal", "age p50 ms", "age p99 ms", "gateway CPU %", "gateway RSS MiB",
             "node CPU % (max node)", "streams per node", "errors")]
    for name in names:
        rs = results[name]
        rows.append((
            name,
            spread([r["images_per_s"] for r in rs], "{:.0f}"),
            spread([100 * r["images_per_s"] / r["ideal"] for r in rs], "{:.1f}"),
            spread([r.get("age_ms", {}).get("p50") for r in rs], "{:.2f}"),
            spread([r.get("age_ms", {}).get("p99") for r in rs], "{:.2f}"),
            spread([r.get("cpu_percent") for r in rs], "{:.1f}"),
            spread([r.get("peak_rss_mib") for r in rs], "{:.1f}"),
            spread([max(r["node_cpu_percent"]) for r in rs], "{:.1f}"),
            spread([max(s for s in r["node_streams"] if s is not None) for r in rs], "{:.0f}"),
            spread([r["errors"] for r in rs], "{:.0f}"),
        ))
    print_table(rows)


if __name__ == "__main__":
    main()
