"""`daqdata web` in a real browser: Debian's headless Chromium, driven over
the DevTools protocol by playwright (its own browsers are never downloaded).

One test walks through what an astronomer does with the page: watch every
simulated module's frames move, each panel named by its node ("daq1 · module
3", the server's host name), pause, click a pixel, open twenty tabs
(while the DaqData server still serves one stream), lose the server and
get it back. It reports `daqdata web`'s CPU with 21 tabs open and the tab's
JavaScript heap, and saves a screenshot (to docs/web-view.png when
DAQDATA_UPDATE_DOCS=1).

A second test watches Hashpipe's health in the host bar: a real status
buffer kept by `daqsim --hashpipe-status` under the test's own keyfile,
read by the server (`[hashpipe_status]`), streamed by StreamHashpipeStatus
to `daqdata web`; when daqsim's net thread blocks, the node turns red and
says so; when daqsim stops (SIGSTOP, so its counters stop moving) the node
turns red and says the buffer is stale, and when it goes on the red goes.
With DAQDATA_UPDATE_DOCS=1 its screenshot of the bar and the plot goes to
docs/web-hashpipe-test.png (not committed; the README's picture is of
`--init-sim`, with minutes of history).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from playwright.sync_api import sync_playwright

from conftest import DAQSIM, ROOT, TARGET, Server, free_port

DAQDATA = TARGET / "release" / "daqdata"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return text


def metric_value(text, name):
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def simulated_modules(port):
    """The modules whose frames the server tracks (from its /metrics)."""
    deadline = time.time() + 20
    while time.time() < deadline:
        found = {int(m) for m, n in re.findall(r'^daqdata_frames_tracked_total\{module="(\d+)",[^}]*\} (\S+)$',
                                               metrics(port), re.M) if float(n) > 0}
        if found:
            return sorted(found)
        time.sleep(0.2)
    raise AssertionError("the simulated server tracked no frames")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(port, proc, what, log):
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{what} did not start; see {log}")
            time.sleep(0.05)


def movie_frames(page):
    """Each module panel's (file, frame) as the DOM shows it: its movie
    image's, or its pulse-height image's for a module without movie data."""
    return page.eval_on_selector_all(
        "section.module",
        """els => Object.fromEntries(els.map(e => {
             const shown = [...e.querySelectorAll('figure.map')].filter(f => !f.hidden);
             const f = shown.find(f => f.dataset.kind === 'movie') || shown[0];
             return [e.dataset.module, f ? [f.querySelector('.file').textContent, f.querySelector('.frame').textContent]
                                         : ['', '–']];
           }))""")


def panel_names(page):
    """Each module panel's (node, module) as its data says, and its title."""
    return page.eval_on_selector_all(
        "section.module",
        "els => els.map(e => [e.dataset.node, e.dataset.module, e.querySelector('.name').textContent])")


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def heap_used(cdp):
    cdp.send("HeapProfiler.collectGarbage")
    return cdp.send("Runtime.getHeapUsage")["usedSize"]


def test_the_web_view_in_a_real_browser(tmp_path):
    assert os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM}: .ci/run installs Debian's chromium"
    mport = free_port()
    server = Server(tmp_path, "--init-sim", "--metrics-listen", f"127.0.0.1:{mport}")
    wport = free_port()
    web_log = open(tmp_path / "web.log", "w")
    web = subprocess.Popen([str(DAQDATA), "web", "--host", server.tcp, "--listen", f"127.0.0.1:{wport}"],
                           stdout=web_log, stderr=web_log)
    url = f"http://127.0.0.1:{wport}/"
    try:
        wait_port(wport, web, "daqdata web", tmp_path / "web.log")
        modules = simulated_modules(mport)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            context = browser.new_context(viewport={"width": 1440, "height": 1000})
            page = context.new_page()
            page.goto(url)

            # Every simulated module gets a panel whose frames move.
            wait_for(lambda: sorted(int(m) for m in movie_frames(page)) == modules
                     and all(f != "–" for _, f in movie_frames(page).values()),
                     20, f"panels of modules {modules}")
            before = movie_frames(page)
            time.sleep(3)
            after = movie_frames(page)
            for m in before:
                (file0, frame0), (file1, frame1) = before[m], after[m]
                assert file1 != file0 or int(frame1) > int(frame0), \
                    f"module {m}: frame {frame0} -> {frame1} in {file1} over 3 s"
            # Each panel names the node it comes from: the server's host name
            # (the response's `name`), as a gateway's viewers need.
            node = socket.gethostname()
            for panel_node, module, title in panel_names(page):
                assert panel_node == node, (panel_node, node)
                assert title == f"{node} · module {module}", title
            rate = float(page.text_content("#total-rate").split()[0])
            assert rate > 0, "the images/s badge says 0"
            host = page.text_content("#hosts")
            assert "streaming" in host, host

            # The tab's JavaScript heap, after garbage collection.
            cdp = context.new_cdp_session(page)
            heap_start = heap_used(cdp)

            # Click the middle of module 1's movie map: its value and place.
            first = page.locator("section.module").first
            first.locator("figure:not([hidden]) canvas.heat").first.click(position={"x": 150, "y": 140})
            info = page.text_content("#pixel-info")
            assert re.search(r"row \d+, column \d+ = -?\d+ — quabo \d", info), info

            # Pause freezes the panels; resume moves them again.
            page.click("#pause")
            time.sleep(0.5)
            frozen = movie_frames(page)
            time.sleep(1.5)
            assert movie_frames(page) == frozen, "frames moved while paused"
            page.click("#pause")
            wait_for(lambda: movie_frames(page) != frozen, 5, "frames after resume")

            # Twenty more tabs: still one stream at the server.
            tabs = [context.new_page() for _ in range(20)]
            for t in tabs:
                t.goto(url)
            for t in tabs:
                t.wait_for_selector("section.module", timeout=20000)
            cpu0, t0 = cpu_seconds(web.pid), time.time()
            time.sleep(5)
            web_cpu = (cpu_seconds(web.pid) - cpu0) / (time.time() - t0)
            streams = metric_value(metrics(mport), "daqdata_active_streams")
            assert streams == 1, f"the server serves {streams} streams for 21 tabs of one host"
            for t in tabs:
                t.close()
            print(f"\ndaqdata web with 21 tabs: {100 * web_cpu:.1f}% of a core")
            assert web_cpu < 1.0, f"daqdata web used {web_cpu:.2f} cores for 21 tabs"

            # The heap after a while of updates stays where it was.
            time.sleep(5)
            heap_end = heap_used(cdp)
            print(f"tab JS heap: {heap_start / 1e6:.2f} MB -> {heap_end / 1e6:.2f} MB")
            assert heap_end < heap_start + 2e6, f"JS heap grew {heap_start} -> {heap_end} bytes"

            shot = tmp_path / "web-view.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 20000
            if os.environ.get("DAQDATA_UPDATE_DOCS") == "1":
                shutil.copy(shot, ROOT / "docs" / "web-view.png")

            # The server goes away: the bar says so; it comes back: frames move.
            server.stop()
            wait_for(lambda: "reconnecting (attempt" in page.text_content("#hosts"), 10,
                     "the host bar to say reconnecting")
            assert page.get_attribute("#hosts .host", "data-state") == "reconnecting"
            stalled = movie_frames(page)
            again = tmp_path / "again"
            again.mkdir()
            server = Server(again, "--init-sim", "--metrics-listen", f"127.0.0.1:{mport}", port=server.port)
            wait_for(lambda: "streaming" in page.text_content("#hosts"), 15, "streaming again")
            wait_for(lambda: all(movie_frames(page).get(m) != stalled[m] for m in stalled), 15,
                     "every module's frames to move after the restart")
            browser.close()
    finally:
        web.terminate()
        web.wait(timeout=15)
        web_log.close()
        server.stop()


def hashpipe_chips(page):
    """Each node's Hashpipe chip in the host bar: (node, bad, text)."""
    return page.eval_on_selector_all(
        "#hashpipe .hashpipe",
        "els => els.map(e => [e.dataset.node, e.dataset.bad, e.textContent])")


def test_hashpipe_health_in_the_host_bar(tmp_path):
    assert os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM}: .ci/run installs Debian's chromium"
    # The status buffer's key comes from ftok(keyfile): a private file keeps
    # this test's segment apart from any other (SPEC 9).
    keyfile = tmp_path / "hashpipe_keyfile"
    keyfile.write_text("")
    sim_log = open(tmp_path / "daqsim.log", "w")
    sim = subprocess.Popen([str(DAQSIM), "--hashpipe-status", "--hashpipe-keyfile", str(keyfile)],
                           stdout=sim_log, stderr=sim_log,
                           env={**os.environ, "HASHPIPE_KEYFILE": str(keyfile)})
    config = tmp_path / "server.toml"
    config.write_text(f'[hashpipe_sockets]\npath_template = "{tmp_path}/hp_{{dp_name}}.sock"\n\n'
                      f'[hashpipe_status]\nkeyfile = "{keyfile}"\npoll_seconds = 1\n')
    server = Server(tmp_path, "--config", str(config), "--metrics-listen", "")
    wport = free_port()
    web_log = open(tmp_path / "web.log", "w")
    web = subprocess.Popen([str(DAQDATA), "web", "--host", server.tcp, "--listen", f"127.0.0.1:{wport}"],
                           stdout=web_log, stderr=web_log)
    try:
        wait_port(wport, web, "daqdata web", tmp_path / "web.log")
        node = socket.gethostname()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"http://127.0.0.1:{wport}/")

            def chip():
                return next((c for c in hashpipe_chips(page) if c[0] == node), None)

            # Moving counters: thread states, a packet rate, not red.
            well = wait_for(lambda: (c := chip()) and c[1] == "false" and "pkt/s" in c[2] and c, 30,
                            f"{node}'s Hashpipe chip with thread states and a packet rate")
            assert "net " in well[2] and "lost/s" in well[2], well
            wait_for(lambda: page.is_visible("#hashpipe-plot"), 15, "the packets/s plot")
            if os.environ.get("DAQDATA_UPDATE_DOCS") == "1":
                page.screenshot(path=str(ROOT / "docs" / "web-hashpipe-test.png"),
                                clip={"x": 0, "y": 0, "width": 1000, "height": 460})

            # daqsim's net thread blocks for 2 s in every 10: the chip names
            # it, in red.
            blocked = wait_for(lambda: (c := chip()) and c[1] == "true" and "blocked" in c[2] and c,
                               30, f"{node}'s chip to turn red when daqsim's net thread blocks")
            assert "net blocked" in blocked[2], blocked

            # daqsim stops: its counters stop moving, the buffer is stale.
            sim.send_signal(signal.SIGSTOP)
            bad = wait_for(lambda: (c := chip()) and c[1] == "true" and "stale" in c[2] and c, 60,
                           f"{node}'s chip to turn red and say stale when daqsim stops")
            assert page.eval_on_selector(
                f'#hashpipe .hashpipe[data-node="{node}"]',
                "e => getComputedStyle(e).borderColor") == "rgb(248, 81, 73)"

            # It goes on: the red goes.
            sim.send_signal(signal.SIGCONT)
            wait_for(lambda: (c := chip()) and c[1] == "false" and c, 60,
                     f"{node}'s chip to be well again when daqsim goes on")
            browser.close()
    finally:
        sim.send_signal(signal.SIGCONT)
        for proc in (web, sim):
            proc.terminate()
            proc.wait(timeout=15)
        server.stop()
        web_log.close()
        sim_log.close()
