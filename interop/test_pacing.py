"""Pacing as a Python client sees it (SPEC §3 rule 1).

The effective interval is max(client interval, hp_io interval); a client
asking 0 or a negative number (down to -inf) is served as fast as hp_io
updates, i.e. once per hp_io interval per (module, type); NaN, +inf and
more than max_client_update_interval_seconds (60) are INVALID_ARGUMENT.

The simulated run writes movie frames (img16 module 1, img8 module 2) at
1000 frames/s, far faster than any interval here, so a stream must get one
movie frame per effective interval per module. Pulse-height frames are
slow and bursty in the fixtures, so only movie frames are counted."""

import threading
import time

import grpc
import pytest

from ourproto import MOVIE, pb, stub

MOVIE_MODULES = (1, 2)
WINDOW = 4.0  # seconds of counting, after each module's first frame


def init_sim(s, hp_io_interval):
    reply = s.InitHpIo(pb.InitHpIoRequest(simulate_daq=True, update_interval_seconds=hp_io_interval, force=True),
                       timeout=15)
    assert reply.success, reply.error_message


def receive(s, interval, seconds):
    """Movie frames of one stream for `seconds`: [(arrival, module, file, frame_number)]."""
    responses = s.StreamImages(pb.StreamImagesRequest(stream_movie_data=True, stream_pulse_height_data=False,
                                                      update_interval_seconds=interval), timeout=60)
    got = []
    timer = threading.Timer(seconds, responses.cancel)
    timer.start()
    try:
        for r in responses:
            got.append((time.monotonic(), r.pano_image.module_id, r.pano_image.file, r.pano_image.frame_number))
            assert r.pano_image.type == MOVIE
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.CANCELLED:
            raise
    finally:
        timer.cancel()
    return got


def rates(got):
    """Frames/s per module over WINDOW seconds from that module's first frame."""
    out = {}
    for module in MOVIE_MODULES:
        times = [t for t, m, _, _ in got if m == module]
        assert times, f"no movie frames from module {module}"
        window = [t for t in times if t - times[0] <= WINDOW]
        assert window[-1] - window[0] > WINDOW - 0.5, f"module {module}: frames stopped after {window[-1] - window[0]:.2f} s"
        out[module] = (len(window) - 1) / (window[-1] - window[0])
    return out


def assert_never_back_in_time(got):
    last = {}
    for _, module, file, n in got:
        if (module, file) in last:
            assert n > last[module, file], f"module {module} {file}: frame {n} after frame {last[module, file]}"
        last[module, file] = n


def assert_paced(s, interval, expected=(18.0, 21.0)):
    got = receive(s, interval, WINDOW + 1.5)
    assert_never_back_in_time(got)
    r = rates(got)
    low, high = expected
    assert all(low <= v <= high for v in r.values()), f"client interval {interval}: {r} frames/s per module"
    return r


def test_client_interval_above_hp_io_interval_paces_the_stream(server):
    s = stub(server.tcp)
    init_sim(s, 0.01)
    assert_paced(s, 0.05)


def test_a_client_asking_faster_than_hp_io_gets_the_hp_io_rate(server):
    s = stub(server.tcp)
    init_sim(s, 0.1)
    assert_paced(s, 0.05, expected=(9.0, 10.5))


@pytest.mark.parametrize("interval", [0.0, -1.0, 0.05])
def test_zero_and_negative_mean_as_fast_as_hp_io_updates(server, interval):
    # hp_io at 0.05 s: a client asking 0 or -1 (the Python CLI's
    # --plot-phdist and --plot-speed) gets the hp_io rate, not every frame
    # written (1000/s), and the same as a client asking 0.05.
    s = stub(server.unix)
    init_sim(s, 0.05)
    assert_paced(s, interval)


def test_invalid_intervals_are_refused_and_minus_infinity_is_served(server):
    s = stub(server.tcp)
    init_sim(s, 0.05)
    for bad in (float("nan"), float("inf"), 61.0):
        responses = s.StreamImages(pb.StreamImagesRequest(stream_movie_data=True, update_interval_seconds=bad),
                                   timeout=10)
        with pytest.raises(grpc.RpcError) as e:
            next(responses)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
    assert_paced(s, float("-inf"))
