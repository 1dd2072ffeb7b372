#!/usr/bin/env python3
"""Soak test of the DaqData server (run through scripts/soak.sh).

Everything runs on this machine, over a unix socket and loopback TCP:

- daqsim replays the fixtures as 4 modules (img16 + ph256 each) at 1000
  frames/s, a new file every 10,000 frames, and a new run (a restart into
  the same output directory: a new run directory) every 10 minutes; files
  two or more seqnos behind, and ended runs, are deleted as they age so the
  disk does not fill (a new run due within 5 s of a forced InitHpIo comes
  half a re-init period later, so that each event's effect stays apart);
- the release server tracks that tree (InitHpIo data_dir, hp_io every 10 ms);
- 100 streaming clients (grpcio stubs of daqdata-proto/proto/daq_data.proto,
  in two worker processes): 90 stay connected over the unix socket with a
  mix of intervals, data types and module filters (5 of them read slowly),
  10 reconnect over TCP every 2-5 s on a new connection each time; every
  client reconnects after its stream ends with an error;
- a forced InitHpIo (`daqdata --init`, force=true) every 2 minutes;
- an uploader (a third process, grpcio's blocking API): UploadImages calls
  of 10 s at 20 ph256 images/s, module 99.

Every 10 s it samples the server's RSS (VmRSS), open files (/proc/PID/fd),
threads and CPU (and, when the server has --metrics-listen, scrapes its
/metrics on a port of its own), printing a row to stderr as it goes. At the end it prints
a markdown table, the errors by status code and a verdict to stdout, and
draws the samples into a PNG (--plot). Exit code 0 only when the verdict
passes.

Verdict:
- RSS growth = mean RSS of the samples in the last quarter of the run over
  the mean of those in the baseline window, the same length, that starts
  when warm-up ends (minute 2), minus 1: under 5 %;
- open files and threads do not grow: the mean of the last quarter is no
  more than the highest sample of the baseline window;
- no client error except CANCELLED "hp_io was reconfigured" of a call
  opened before a forced InitHpIo returned and ended after it started (a
  slow reader meets it only when it has read what was buffered before it),
  and UNAVAILABLE "being (re)configured" for a call opened while an
  InitHpIo runs (SPEC §3: retryable); every InitHpIo succeeds; every client gets images; uploads are
  taken and reach the streams; the server lives to the end and exits 0 on
  SIGINT; every /metrics scrape answers.

Runs shorter than 10 minutes scale the schedule down: warm-up min(2 min,
T/3), a forced InitHpIo every min(2 min, max(20 s, T/3)), a new run every
min(10 min, T/2), a sample every 5 s.
"""

import argparse
import asyncio
import ctypes
import gc
import importlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
PROTO_DIR = ROOT / "daqdata-proto" / "proto"

MODULES = [1, 2, 3, 4]
RATE = 1000.0
FRAMES_PER_FILE = 10_000
HP_IO_INTERVAL = 0.01
UPLOAD_MODULE = 99
UPLOAD_RATE = 20.0
UPLOAD_CALL_SECONDS = 10.0
N_CLIENTS = 100
N_RECONNECTING = 10
N_SLOW = 5
RECONNECT_EVERY = (2.0, 5.0)
RSS_LIMIT_PERCENT = 5.0
MAX_CONCURRENT_RPCS = 200

EXPECTED = {
    # code: (words the server's message holds, why it is expected)
    "CANCELLED": ("reconfigured by InitHpIo", "a forced InitHpIo ended the stream or upload"),
    "UNAVAILABLE": ("being (re)configured by InitHpIo", "opened while an InitHpIo ran (SPEC §3: retryable)"),
}
# Slack of the clock reads around an InitHpIo (t0 before `daqdata --init`
# starts, t1 after it exits) and a client's own reads.
SLACK = 0.5
# UNAVAILABLE comes at once, when a call is opened: within this after t1.
UNAVAILABLE_AFTER = 3.0


def interrupt(*_):
    """SIGTERM handler: stop as Ctrl-C does, through the finally blocks."""
    raise KeyboardInterrupt


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def load_stubs(out_dir: Path):
    """grpcio stubs of our .proto, generated into out_dir (as interop/ourproto.py does)."""
    if not (out_dir / "daq_data_pb2_grpc.py").exists():
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={out_dir}",
                        f"--grpc_python_out={out_dir}", "daq_data.proto"], check=True)
    sys.path.insert(0, str(out_dir))
    return importlib.import_module("daq_data_pb2"), importlib.import_module("daq_data_pb2_grpc")


# ---------------------------------------------------------------- workers --

def worker(spec_path: Path):
    """One client process: runs its clients until spec["until"], writes
    counters to spec["status"] every 2 s and everything at the end."""
    spec = json.loads(spec_path.read_text())
    signal.signal(signal.SIGTERM, interrupt)
    try:
        if spec.get("uploader"):
            uploader(spec)
        else:
            asyncio.run(_worker(spec))
    except KeyboardInterrupt:
        pass


class Stats:
    def __init__(self, n):
        self.images = 0
        self.uploaded_seen = 0
        self.per_client = [0] * n
        self.started = 0
        self.own_ends = 0
        self.ok_ends = 0
        self.errors = []
        self.uploads_ok = 0
        self.upload_calls = 0
        self.upload_images = 0
        self.ages_ms = []
        self.slow_ages_ms = []

    def snapshot(self, final):
        d = {k: v for k, v in vars(self).items() if k not in ("errors", "ages_ms", "slow_ages_ms")}
        d["n_errors"] = len(self.errors)
        if final:
            d["errors"] = self.errors
            d["ages_ms"] = self.ages_ms
            d["slow_ages_ms"] = self.slow_ages_ms
        return d


def frame_age_ms(image):
    f = image.header.fields
    q = f["quabo_0"].struct_value.fields if "quabo_0" in f else f
    if "tv_sec" not in q:
        return None
    return (time.time() - q["tv_sec"].number_value - q["tv_usec"].number_value * 1e-6) * 1e3


async def _worker(spec):
    import grpc
    pb, pb_grpc = load_stubs(Path(spec["stubs"]))
    until = spec["until"]
    clients = spec["clients"]
    st = Stats(len(clients))
    # Each channel its own connection, as 100 viewers in their own processes
    # would have (grpcio otherwise shares one per target within a process).
    options = [("grpc.max_receive_message_length", 16 << 20), ("grpc.use_local_subchannel_pool", 1)]

    def record(c, rpc, e, opened):
        st.errors.append({"t": time.time(), "opened": opened, "client": c, "rpc": rpc, "code": e.code().name,
                          "details": e.details()})

    async def consume(call, i, c):
        n = 0
        async for r in call:
            n += 1
            st.images += 1
            st.per_client[i] += 1
            if r.pano_image.module_id == UPLOAD_MODULE:
                st.uploaded_seen += 1
            elif n % 50 == 1 and len(st.ages_ms) < 200_000:
                age = frame_age_ms(r.pano_image)
                if age is not None:
                    (st.slow_ages_ms if c["slow"] else st.ages_ms).append(round(age, 2))
            if c["slow"]:
                await asyncio.sleep(c["slow"])

    async def stream_client(i, c):
        req = pb.StreamImagesRequest(stream_movie_data=c["movie"], stream_pulse_height_data=c["ph"],
                                     update_interval_seconds=c["interval"], module_ids=c["modules"])
        ch = None
        await asyncio.sleep(random.uniform(0, 1))
        for _ in range(1_000_000):
            if time.time() >= until - 0.2:
                break
            if ch is None:
                ch = grpc.aio.insecure_channel(c["host"], options=options)
            lifetime = random.uniform(*RECONNECT_EVERY) if c["reconnect"] else 1e9
            end = min(until, time.time() + lifetime)
            opened = time.time()
            call = pb_grpc.DaqDataStub(ch).StreamImages(req)
            st.started += 1
            pause = 0.0
            try:
                await asyncio.wait_for(consume(call, i, c), timeout=max(0.05, end - time.time()))
                st.ok_ends += 1  # the server ended the stream with OK: not expected either
                st.errors.append({"t": time.time(), "opened": opened, "client": i, "rpc": "StreamImages",
                                  "code": "OK (stream ended)",
                                  "details": ""})
                pause = 1.0
            except asyncio.TimeoutError:
                call.cancel()
                st.own_ends += 1
            except grpc.aio.AioRpcError as e:
                record(i, "StreamImages", e, opened)
                pause = random.uniform(0.5, 1.5)
            if c["reconnect"]:
                await ch.close()
                ch = None
                if pause:
                    # A call that ended in an error is held in a reference
                    # cycle, and with it the closed channel's connection,
                    # until Python's collector runs (minutes): the server
                    # would count those sockets as its own open files.
                    del call
                    gc.collect()
            await asyncio.sleep(pause)
        if ch is not None:
            await ch.close()

    async def report():
        while True:
            write_json(spec["status"], st.snapshot(False))
            await asyncio.sleep(2)

    reporter = asyncio.ensure_future(report())
    tasks = [stream_client(i, c) for i, c in enumerate(clients)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=until - time.time() + 30)
    finally:
        reporter.cancel()
        write_json(spec["status"], st.snapshot(True))


def uploader(spec):
    """UploadImages calls of UPLOAD_CALL_SECONDS at UPLOAD_RATE images/s
    until spec["until"]. grpcio's blocking API: its asyncio API reports a
    client-streaming call that the server ends while the client still
    writes as INTERNAL "Internal error from Core" instead of the server's
    status (grpc/grpc#36066), which would hide the CANCELLED of a re-init."""
    import grpc
    pb, pb_grpc = load_stubs(Path(spec["stubs"]))
    until = spec["until"]
    st = Stats(0)
    ch = grpc.insecure_channel(spec["host"], options=[("grpc.use_local_subchannel_pool", 1)])
    stub = pb_grpc.DaqDataStub(ch)
    frame = 0
    for _ in range(1_000_000):
        if time.time() >= until - 1.0:
            break
        call_end = min(until - 0.5, time.time() + UPLOAD_CALL_SECONDS)
        sent = 0

        def images():
            nonlocal frame, sent
            for _ in range(int(UPLOAD_CALL_SECONDS * UPLOAD_RATE) + 1):
                now = time.time()
                if now >= call_end:
                    return
                img = pb.PanoImage(type=pb.PanoImage.Type.Value("PULSE_HEIGHT"), shape=[16, 16], bytes_per_pixel=2,
                                   module_id=UPLOAD_MODULE, file="soak_upload.pff", frame_number=frame,
                                   image_array=[(i * 37 + frame) % 4096 for i in range(256)])
                img.header.update({"quabo_num": 0, "pkt_num": frame, "pkt_tai": (int(now) + 37) % 1024,
                                   "pkt_nsec": 0, "tv_sec": int(now), "tv_usec": int((now % 1) * 1e6)})
                frame += 1
                sent += 1
                yield pb.UploadImageRequest(pano_image=img)
                time.sleep(1 / UPLOAD_RATE)

        st.upload_calls += 1
        opened = time.time()
        try:
            stub.UploadImages(images(), timeout=UPLOAD_CALL_SECONDS + 10)
            st.uploads_ok += 1
            st.upload_images += sent
        except grpc.RpcError as e:
            st.errors.append({"t": time.time(), "opened": opened, "client": "uploader", "rpc": "UploadImages",
                              "code": e.code().name,
                              "details": e.details() or ""})
            time.sleep(random.uniform(0.5, 1.5))
        write_json(spec["status"], st.snapshot(False))
    ch.close()
    write_json(spec["status"], st.snapshot(True))


def write_json(path, obj):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


# ------------------------------------------------------------- processes --

def die_with_parent():
    """Children get SIGTERM if this process dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(cmd, logfile, env=None):
    return subprocess.Popen([str(c) for c in cmd], stdout=open(logfile, "a"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent, env=env)


def stop(p, sig=signal.SIGINT, timeout=15):
    """Signals p and waits; kills it after timeout. Returns its exit code."""
    if p is None:
        return None
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode


def wait_for(cond, what, timeout=30):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """/proc samples of one process."""

    def __init__(self, pid):
        self.pid = pid
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.last = None

    def cpu_seconds(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.ticks

    def sample(self):
        status = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                status[k] = v.split()
        now, cpu = time.time(), self.cpu_seconds()
        pct = None
        if self.last:
            pct = 100 * (cpu - self.last[1]) / max(1e-9, now - self.last[0])
        self.last = (now, cpu)
        # RssAnon is the heap and stacks; RssFile the binary's and libraries'
        # pages, which grow as rarely run code is first touched.
        return {"rss_mib": int(status["VmRSS"][0]) / 1024, "fds": len(os.listdir(f"/proc/{self.pid}/fd")),
                "threads": int(status["Threads"][0]), "cpu": pct,
                "rss_anon_mib": int(status["RssAnon"][0]) / 1024, "rss_file_mib": int(status["RssFile"][0]) / 1024}


class Sim:
    """daqsim writing into one output directory; restart() starts a new run."""

    def __init__(self, data, logfile, frames_bound, frames_per_file):
        self.data, self.logfile, self.frames_bound = data, logfile, frames_bound
        self.frames_per_file = frames_per_file
        self.proc = None
        self.runs = 0
        self.start()

    def start(self):
        self.proc = spawn([BIN / "daqsim", "--replay", ROOT / "fixtures", "--out", self.data,
                           "--modules", ",".join(f"1:{m}" for m in MODULES), "--rate", RATE,
                           "--frames-per-file", self.frames_per_file, "--frames", self.frames_bound], self.logfile)
        self.runs += 1

    def restart(self):
        stop(self.proc)
        # A run directory is named by its start second: make sure the next differs.
        time.sleep(1.1)
        self.start()

    def prune(self, min_age=20.0):
        """Deletes files two or more seqnos behind in each module's newest
        run and ended runs older than min_age s; returns how many went."""
        gone = 0
        now = time.time()
        for module in self.data.glob("module_*"):
            runs = sorted(module.glob("*.pffd"))
            for old in runs[:-1]:
                if (old / "recording_ended").exists() and now - old.stat().st_mtime > min_age:
                    shutil.rmtree(old, ignore_errors=True)
                    gone += 1
            if not runs:
                continue
            by_dp = {}
            for f in runs[-1].glob("*.pff"):
                pairs = dict(p.split("_", 1) for p in f.name[:-4].split(".") if "_" in p)
                by_dp.setdefault(pairs.get("dp"), []).append((int(pairs.get("seqno", 0)), f))
            for files in by_dp.values():
                files.sort()
                for _, f in files[:-2]:
                    f.unlink(missing_ok=True)
                    gone += 1
        return gone


# ------------------------------------------------------------------ main --

def plan(minutes):
    total = minutes * 60.0
    full = total >= 600
    p = {
        "total": total,
        "warmup": 120.0 if full else min(120.0, total / 3),
        "reinit": 120.0 if full else min(120.0, max(20.0, total / 3)),
        "new_run": 600.0 if full else min(600.0, total / 2),
        "sample": 10.0 if full else 5.0,
        "full": full,
    }
    p["baseline"] = (p["warmup"], p["warmup"] + total / 4)
    p["last"] = (0.75 * total, total)
    return p


def client_specs(unix, tcp):
    """100 clients: 10 reconnecting over TCP, 90 staying on the unix socket."""
    intervals = [0.1, 0.25, 0.5, 1.0, 2.0]
    kinds = [(True, True), (True, False), (False, True)]
    filters = [[], [1], [2, 3], []]
    out = []
    for i in range(N_CLIENTS):
        if i < N_RECONNECTING:
            out.append({"host": tcp, "reconnect": True, "interval": 0.1, "movie": True, "ph": True, "modules": [],
                        "slow": 0})
        elif i < N_RECONNECTING + N_SLOW:
            out.append({"host": unix, "reconnect": False, "interval": 0.05, "movie": True, "ph": True,
                        "modules": [], "slow": 0.1})
        else:
            movie, ph = kinds[i % 3]
            out.append({"host": unix, "reconnect": False, "interval": intervals[i % 5], "movie": movie, "ph": ph,
                        "modules": filters[i % 4], "slow": 0})
    return out


def classify(err, inits):
    """(expected?, why) for one client error.

    CANCELLED "reconfigured": the call was opened before some InitHpIo
    returned and ended after it started. A slow reader meets the status only
    when it has read what its connection had buffered before it, which can
    be minutes later, so no window after the InitHpIo is imposed; a call
    opened after the last InitHpIo and cancelled as if by one is a bug.
    UNAVAILABLE "being (re)configured": within an InitHpIo, as it answers
    the opening of a call at once."""
    exp = EXPECTED.get(err["code"])
    if not (exp and exp[0] in err["details"]):
        return False, "unexpected"
    opened = err.get("opened", err["t"])
    for t0, t1, _ in inits:
        if err["code"] == "CANCELLED" and opened <= t1 + SLACK and err["t"] >= t0 - SLACK:
            return True, exp[1]
        if err["code"] == "UNAVAILABLE" and t0 - SLACK <= err["t"] <= t1 + UNAVAILABLE_AFTER:
            return True, exp[1]
    return False, "message of a re-init, but no InitHpIo explains it"


def mean(xs):
    return statistics.fmean(xs) if xs else float("nan")


def in_window(samples, window):
    return [s for s in samples if window[0] - 1e-6 <= s["t"] <= window[1] + 1e-6]


def md_table(header, rows):
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


def fmt_t(t):
    return f"{int(t) // 60}:{int(t) % 60:02d}"


def draw(path, samples, events, p, verdict_line):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = [s["t"] / 60 for s in samples]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ax1.plot(t, [s["rss_mib"] for s in samples], "o-", ms=2.5, color="tab:blue", label="RSS (MiB)")
    for (a, b), color, label in ((p["baseline"], "tab:green", "baseline window"),
                                 (p["last"], "tab:orange", "last quarter")):
        ax1.axvspan(a / 60, b / 60, color=color, alpha=0.12, label=label)
    labelled = set()
    for kind, te in events:
        ls, color = {"reinit": (":", "tab:red"), "new run": ("--", "tab:purple")}[kind]
        ax1.axvline(te / 60, ls=ls, color=color, lw=0.9,
                    label=None if kind in labelled else ("forced InitHpIo" if kind == "reinit" else "new run"))
        ax2.axvline(te / 60, ls=ls, color=color, lw=0.9)
        labelled.add(kind)
    rss = [s["rss_mib"] for s in samples]
    ax1.set_ylim(0, max(rss) * 1.25 if rss else 1)
    ax1.set_ylabel("server RSS (MiB)")
    ax1.legend(loc="lower right", fontsize=8, ncol=3)
    ax1.set_title(f"daqdata-server soak, {p['total'] / 60:g} min: {verdict_line}", fontsize=10)
    ax1.grid(alpha=0.3)
    ax2.plot(t, [s["fds"] for s in samples], "o-", ms=2.5, color="tab:brown", label="open files (fds)")
    ax2.set_ylabel("open files")
    ax2.set_ylim(0, max(s["fds"] for s in samples) * 1.3 if samples else 1)
    ax3 = ax2.twinx()
    ax3.plot(t, [s["threads"] for s in samples], "s-", ms=2.5, color="tab:gray", label="threads")
    ax3.set_ylabel("threads")
    ax3.set_ylim(0, max(s["threads"] for s in samples) * 1.5 + 1 if samples else 1)
    h1, l1 = ax2.get_legend_handles_labels()
    h3, l3 = ax3.get_legend_handles_labels()
    ax2.legend(h1 + h3, l1 + l3, loc="lower right", fontsize=8)
    ax2.set_xlabel("minutes since the clients started")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--plot", default="docs/soak-rss.png", help="PNG to write (relative to the caller's directory; "
                    "the default is the repository's docs/soak-rss.png)")
    ap.add_argument("--keep", action="store_true", help="keep the data tree (under the temp dir)")
    ap.add_argument("--frames-per-file", type=int, default=FRAMES_PER_FILE, metavar="N",
                    help=f"daqsim starts a new file every N frames (default {FRAMES_PER_FILE}, every "
                    f"{FRAMES_PER_FILE / RATE:g} s); a large N turns rotation off")
    ap.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                    help="set this in the server's environment (repeatable), e.g. MALLOC_ARENA_MAX=2")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(Path(args.worker))
    if not 0.5 <= args.minutes <= 24 * 60:
        sys.exit("--minutes must be between 0.5 and 1440")
    if any("=" not in e for e in args.server_env):
        sys.exit("--server-env takes NAME=VALUE")
    server_env = dict(e.split("=", 1) for e in args.server_env)
    plot = Path(args.plot)
    if not plot.is_absolute():
        base = ROOT if args.plot == ap.get_default("plot") else Path(os.environ.get("SOAK_CALLER_CWD", os.getcwd()))
        plot = base / plot

    p = plan(args.minutes)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    logs = ROOT / "target" / "soak-logs" / stamp
    logs.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    data, sock = tmp / "daq", tmp / "daq_data.sock"
    unix, port = f"unix://{sock}", free_port()
    tcp = f"127.0.0.1:{port}"

    schedule = (f"warm-up {p['warmup']:.0f} s, a forced InitHpIo every {p['reinit']:.0f} s, a new run every "
                f"{p['new_run']:.0f} s, a sample every {p['sample']:.0f} s")
    log(f"soak: {args.minutes:g} min; {schedule}" +
        ("" if p["full"] else " (a run under 10 minutes scales the 2-minute warm-up and re-init, and the 10-minute "
         "run, down to these)"))
    log(f"soak: logs in {logs}, data in {data}")

    signal.signal(signal.SIGTERM, interrupt)
    sim = server = None
    workers = []
    samples, events, inits, init_failures = [], [], [], []
    server_exit = None
    server_died = None
    metrics_url = None
    scrapes = {"ok": 0, "failed": 0, "last_error": ""}
    sim_restarts = 0
    pruned = 0
    interrupted = False
    try:
        frames_bound = int(RATE * (p["new_run"] + p["reinit"] + 120))
        sim = Sim(data, logs / "daqsim.log", frames_bound, args.frames_per_file)
        wait_for(lambda: len(list(data.glob("module_*/*.pffd/*.pff"))) >= len(MODULES) * 2, "daqsim to write")
        config = tmp / "server.toml"
        # Room for 100 streams, the uploader and reconnects that overlap; Hashpipe's
        # sockets (on by default) inside tmp, so that no other server's are touched.
        config.write_text(f"max_concurrent_rpcs = {MAX_CONCURRENT_RPCS}\n\n[hashpipe_sockets]\n"
                          f"path_template = \"{tmp}/hashpipe_grpc.dp_{{dp_name}}.sock\"\n")
        extra = []
        helptext = subprocess.run([BIN / "daqdata-server", "--help"], capture_output=True, text=True).stdout
        if "--metrics-listen" in helptext:
            # Its own port, not the default one another server may hold; scraped at each sample.
            metrics_url = f"http://127.0.0.1:{free_port()}/metrics"
            extra = ["--metrics-listen", metrics_url.split("/")[2]]
        server = spawn([BIN / "daqdata-server", "--config", config, "--listen", unix, "--listen", tcp,
                        "--log-level", "info", *extra], logs / "server.log", env={**os.environ, **server_env})
        wait_for(lambda: sock.exists() or server.poll() is not None, "the server socket")
        if server.poll() is not None:
            raise RuntimeError(f"the server exited at start; see {logs / 'server.log'}")
        hp_cfg = tmp / "hp_io_config.json"
        hp_cfg.write_text(json.dumps({"data_dir": str(data), "update_interval_seconds": HP_IO_INTERVAL,
                                      "force": True, "simulate_daq": False, "module_ids": []}))

        def init():
            t0 = time.time()
            r = subprocess.run([BIN / "daqdata", "--host", unix, "--init", hp_cfg], capture_output=True,
                               text=True, timeout=60)
            t1 = time.time()
            inits.append((t0, t1, r.returncode))
            if r.returncode != 0:
                init_failures.append(f"{fmt_t(t0 - start)}: exit {r.returncode}: {(r.stdout + r.stderr).strip()}")
            return r.returncode == 0

        start = time.time()
        if not init():
            raise RuntimeError(f"the first InitHpIo failed: {init_failures}")
        start = time.time()
        until = start + p["total"]

        stubs = tmp / "stubs"
        stubs.mkdir()
        load_stubs(stubs)  # generate once; this process never opens a channel (it forks daqsim later)
        specs = client_specs(unix, tcp)
        # Two stream workers, and the uploader on its own; the clients run a
        # little past the last sample, so that it sees them all.
        parts = [{"clients": specs[0::2]}, {"clients": specs[1::2]}, {"clients": [], "uploader": True, "host": tcp}]
        for k, part in enumerate(parts):
            spec = {"until": until + 3, "stubs": str(stubs), "status": str(tmp / f"worker{k}.json"), **part}
            (tmp / f"worker{k}.spec").write_text(json.dumps(spec))
            workers.append(spawn([sys.executable, __file__, "--worker", tmp / f"worker{k}.spec"],
                                 logs / f"worker{k}.log"))

        proc = Proc(server.pid)
        proc.sample()
        next_sample, next_prune = start, start + 10
        reinit_at = [start + k * p["reinit"] for k in range(1, int(p["total"] // p["reinit"]) + 1)
                     if k * p["reinit"] < p["total"] - 1]
        run_at = []
        for k in range(1, int(p["total"] // p["new_run"]) + 1):
            t = k * p["new_run"]
            if any(abs(t - r + start) < 5 for r in reinit_at):
                t += p["reinit"] / 2  # a new run and a re-init at once would blur which did what
            if t < p["total"] - 1:
                run_at.append(start + t)
        last_images, last_t = 0, start
        log("   time   RSS MiB  fds  threads  CPU %  images/s  errors  event")
        for _ in range(int(p["total"] / 0.05) + 1000):
            now = time.time()
            if server.poll() is not None:
                server_died = f"the server exited with {server.returncode} at {fmt_t(now - start)}"
                break
            if now >= until + 0.5 and next_sample > until:
                break
            event = ""
            if reinit_at and now >= reinit_at[0]:
                reinit_at.pop(0)
                events.append(("reinit", now - start))
                event = "forced InitHpIo " + ("ok" if init() else "FAILED")
            elif run_at and now >= run_at[0]:
                run_at.pop(0)
                events.append(("new run", now - start))
                sim.restart()
                sim_restarts += 1
                event = "daqsim restarted: new run"
            elif now >= next_prune:
                pruned += sim.prune()
                next_prune += 10
            if sim.proc.poll() is not None and not event:
                raise RuntimeError(f"daqsim exited with {sim.proc.returncode}; see {logs / 'daqsim.log'}")
            if event:
                log(f"  {fmt_t(now - start):>5}  {event}")
            if now >= next_sample:
                s = proc.sample()
                s["t"] = round(next_sample - start, 1)
                stats = [read_status(tmp / f"worker{k}.json") for k in range(len(workers))]
                images = sum(x.get("images", 0) for x in stats)
                s["images_per_s"] = (images - last_images) / max(1e-9, now - last_t)
                s["errors"] = sum(x.get("n_errors", 0) for x in stats)
                last_images, last_t = images, now
                samples.append(s)
                if metrics_url:
                    try:
                        with urllib.request.urlopen(metrics_url, timeout=5) as r:
                            r.read()
                        scrapes["ok"] += 1
                    except OSError as e:
                        scrapes["failed"] += 1
                        scrapes["last_error"] = str(e)
                cpu = "-" if s["cpu"] is None else f"{s['cpu']:.1f}"
                log(f"  {fmt_t(s['t']):>5}  {s['rss_mib']:8.1f}  {s['fds']:3d}  {s['threads']:7d}  {cpu:>5}  "
                    f"{s['images_per_s']:8.0f}  {s['errors']:6d}")
                next_sample += p["sample"]
            nxt = min([next_sample, next_prune] + reinit_at[:1] + run_at[:1])
            time.sleep(min(0.5, max(0.0, nxt - time.time())))
        for w in workers:
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                stop(w, signal.SIGTERM)
    except KeyboardInterrupt:
        interrupted = True
        log("soak: interrupted; cleaning up")
    finally:
        for w in workers:
            stop(w, signal.SIGTERM, timeout=10)
        t_stop = time.time()
        server_exit = stop(server, signal.SIGINT, timeout=30)
        shutdown_s = time.time() - t_stop
        stop(sim.proc if sim else None, signal.SIGINT)
        if not args.keep:
            shutil.rmtree(tmp / "daq", ignore_errors=True)
    if interrupted:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        return 130

    results = [read_status(tmp / f"worker{k}.json") for k in range(len(workers))]
    write_json(logs / "samples.json", {"plan": p, "samples": samples, "events": events, "inits": inits})
    if not args.keep:
        for k in range(len(workers)):
            shutil.copy(tmp / f"worker{k}.json", logs / f"worker{k}.json")
        shutil.rmtree(tmp, ignore_errors=True)
    return report(args, p, plot, logs, samples, events, inits, init_failures, results, server_exit, shutdown_s,
                  server_died, sim_restarts, pruned, schedule, scrapes if metrics_url else None)


def read_status(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def report(args, p, plot, logs, samples, events, inits, init_failures, results, server_exit, shutdown_s,
           server_died, sim_restarts, pruned, schedule, scrapes):
    out = []
    errors = [e for r in results for e in r.get("errors", [])]
    per_client = [n for r in results for n in r.get("per_client", [])]
    images = sum(r.get("images", 0) for r in results)
    ages = sorted(a for r in results for a in r.get("ages_ms", []))
    counts = {}
    for e in errors:
        ok, why = classify(e, inits)
        key = (e["rpc"], e["code"], ok, why)
        c = counts.setdefault(key, {"n": 0, "example": e["details"]})
        c["n"] += 1
    unexpected = sum(c["n"] for (_, _, ok, _), c in counts.items() if not ok)

    base, last = in_window(samples, p["baseline"]), in_window(samples, p["last"])
    checks = []
    rss_b, rss_l = mean([s["rss_mib"] for s in base]), mean([s["rss_mib"] for s in last])
    growth = 100 * (rss_l / rss_b - 1) if base and last else float("nan")
    checks.append((f"RSS growth after {fmt_t(p['warmup'])} < {RSS_LIMIT_PERCENT:g} %",
                   f"{rss_b:.1f} -> {rss_l:.1f} MiB = {growth:+.1f} %", growth < RSS_LIMIT_PERCENT))
    for key, what in (("fds", "open files"), ("threads", "threads")):
        b_max = max((s[key] for s in base), default=float("nan"))
        l_mean = mean([s[key] for s in last])
        checks.append((f"{what} do not grow (last-quarter mean <= baseline max)",
                       f"baseline mean {mean([s[key] for s in base]):.1f}, max {b_max}; last quarter mean "
                       f"{l_mean:.1f}, max {max((s[key] for s in last), default=float('nan'))}",
                       l_mean <= b_max))
    checks.append(("no client error but the expected ones", f"{unexpected} unexpected of {len(errors)}",
                   unexpected == 0))
    checks.append(("every forced InitHpIo succeeded", f"{sum(1 for i in inits if i[2] == 0)} of {len(inits)} "
                   f"(incl. the first)", not init_failures))
    starved = sum(1 for n in per_client if n == 0)
    checks.append(("every client got images", f"{len(per_client)} clients, {images} images, fewest "
                   f"{min(per_client, default=0)}", len(per_client) == N_CLIENTS and starved == 0))
    up_ok = sum(r.get("uploads_ok", 0) for r in results)
    up_calls = sum(r.get("upload_calls", 0) for r in results)
    up_images = sum(r.get("upload_images", 0) for r in results)
    up_seen = sum(r.get("uploaded_seen", 0) for r in results)
    checks.append(("uploads are taken and reach the streams",
                   f"{up_ok} of {up_calls} calls ok, {up_images} images; streams got {up_seen} uploaded images",
                   up_ok > 0 and up_seen > 0))
    checks.append(("the server ran to the end and exited 0 on SIGINT",
                   server_died or f"exit {server_exit} after {shutdown_s:.1f} s",
                   not server_died and server_exit == 0))
    if scrapes is not None:
        checks.append(("/metrics answers at every sample", f"{scrapes['ok']} of {scrapes['ok'] + scrapes['failed']}"
                       + (f"; last error: {scrapes['last_error']}" if scrapes["failed"] else ""),
                       scrapes["failed"] == 0))
    passed = all(ok for _, _, ok in checks)

    n_re = sum(1 for e in events if e[0] == "reinit")
    out.append(f"## Soak: {args.minutes:g} min, {'PASS' if passed else 'FAIL'}\n")
    out.append(f"Schedule: {schedule}." + ("" if p["full"] else
               " This run is under 10 minutes, so the 2-minute warm-up, the 2-minute re-init and the 10-minute "
               "run are scaled down to these."))
    out.append(f"Load: daqsim {len(MODULES)} modules x (img16, ph256) at {RATE:g} frames/s, a new file every "
               f"{args.frames_per_file} frames, {sim_restarts} new run(s); hp_io every {HP_IO_INTERVAL * 1e3:g} ms; "
               f"{N_CLIENTS} streams ({N_RECONNECTING} reconnecting over TCP every {RECONNECT_EVERY[0]:g}-"
               f"{RECONNECT_EVERY[1]:g} s, {N_SLOW} slow readers, the rest on the unix socket), "
               f"{sum(r.get('started', 0) for r in results)} StreamImages calls in all; {n_re} forced InitHpIo; "
               f"uploads at {UPLOAD_RATE:g} images/s in {UPLOAD_CALL_SECONDS:g}-s calls. {pruned} old files and "
               f"runs deleted on the way." + (f" Server environment: {' '.join(args.server_env)}." if args.server_env
                                            else "") + f" Logs: {logs}.\n")
    if ages:
        out.append(f"Frame age at the clients (every 50th tracked image, {len(ages)} samples): p50 "
                   f"{ages[len(ages) // 2]:.1f} ms, p99 {ages[int(0.99 * (len(ages) - 1))]:.1f} ms.\n")
    slow = sorted(a for r in results for a in r.get("slow_ages_ms", []))
    if slow:
        out.append(f"The {N_SLOW} slow readers (10 images/s read of the 160/s they ask for) get frames p50 "
                   f"{slow[len(slow) // 2] / 1e3:.1f} s, max {slow[-1] / 1e3:.1f} s old: what their connections "
                   "had buffered.\n")
    if len(samples) >= 6:
        sixth = p["total"] / 6
        means = [mean([s["rss_mib"] for s in samples if k * sixth <= s["t"] < (k + 1) * sixth or
                       (k == 5 and s["t"] >= p["total"])]) for k in range(6)]
        out.append("Mean RSS in each sixth of the run: " + ", ".join(f"{m:.2f}" for m in means) + " MiB.\n")

    # The table: every sample for short runs, at most ~30 rows otherwise.
    step = max(1, round(len(samples) / 30))
    shown = samples[::step]
    if samples and shown[-1] is not samples[-1]:
        shown.append(samples[-1])
    rows = []
    for s in shown:
        marks = []
        if p["baseline"][0] <= s["t"] <= p["baseline"][1]:
            marks.append("baseline")
        if s["t"] >= p["last"][0]:
            marks.append("last quarter")
        rows.append([fmt_t(s["t"]), f"{s['rss_mib']:.1f}", s["fds"], s["threads"],
                     "-" if s["cpu"] is None else f"{s['cpu']:.1f}", f"{s['images_per_s']:.0f}", s["errors"],
                     ", ".join(marks)])
    out.append(md_table(["time", "RSS MiB", "open files", "threads", "CPU % (1 core)", "images/s (clients)",
                         "client errors so far", "window"], rows))
    out.append(f"\n({len(samples)} samples, every {p['sample']:g} s{'' if step == 1 else f'; every {step}th shown'}.)\n")

    out.append("RSS growth = mean RSS of the samples in the last quarter "
               f"({fmt_t(p['last'][0])}-{fmt_t(p['last'][1])}, {len(last)} samples) / mean of those in the "
               f"baseline window just after warm-up ({fmt_t(p['baseline'][0])}-{fmt_t(p['baseline'][1])}, "
               f"{len(base)} samples) - 1.\n")
    out.append(md_table(["check", "measured", "result"], [[c, m, "pass" if ok else "FAIL"] for c, m, ok in checks]))
    out.append("")
    if counts:
        out.append("Client errors by status code (expected: CANCELLED \"reconfigured\" of a call opened before an "
                   "InitHpIo returned and ended after it started; UNAVAILABLE \"being (re)configured\" from "
                   f"{SLACK:g} s before an InitHpIo to {UNAVAILABLE_AFTER:g} s after it):\n")
        out.append(md_table(["RPC", "code", "count", "expected?", "message (first seen)"],
                            [[rpc, code, c["n"], ("yes: " if ok else "NO: ") + why, c["example"][:110]]
                             for (rpc, code, ok, why), c in sorted(counts.items(), key=lambda kv: -kv[1]["n"])]))
    else:
        out.append("Client errors: none.")
    if init_failures:
        out.append("\nInitHpIo failures:\n" + "\n".join(f"- {f}" for f in init_failures))
    warns = server_log_problems(logs / "server.log")
    if warns:
        out.append(f"\nServer log: {sum(warns.values())} WARN/ERROR lines:\n" +
                   "\n".join(f"- {n} x {m}" for m, n in sorted(warns.items(), key=lambda kv: -kv[1])[:10]))
    verdict = (f"PASS: RSS {growth:+.1f} % after {fmt_t(p['warmup'])}" if passed else
               "FAIL: " + "; ".join(c for c, _, ok in checks if not ok))
    out.append(f"\n**Verdict: {verdict}**\n")
    print("\n".join(out), flush=True)
    if samples:
        draw(plot, samples, events, p, verdict)
        log(f"soak: plot written to {plot}")
    return 0 if passed else 1


def server_log_problems(path):
    """Distinct WARN/ERROR messages of the server's log, with counts."""
    import re
    found = {}
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        m = re.search(r"\b(WARN|ERROR)\b\s+(.*)", line)
        if m:
            msg = re.sub(r"\d+", "N", m.group(2))[:160]
            found[f"{m.group(1)} {msg}"] = found.get(f"{m.group(1)} {msg}", 0) + 1
    return found


if __name__ == "__main__":
    sys.exit(main())
