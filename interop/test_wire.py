"""Python gRPC against the Rust server, with stubs generated from this
project's own .proto: every RPC, the status codes of SPEC §3, and streamed
pixels equal to the frames on disk, over TCP and a unix socket."""

import json
import signal
import threading
import time

import grpc
import pytest
from google.protobuf.empty_pb2 import Empty
from google.protobuf.json_format import MessageToDict

from conftest import channel
from ourproto import MOVIE, PULSE_HEIGHT, pb, stub


def init_sim(s, **kw):
    req = pb.InitHpIoRequest(simulate_daq=True, update_interval_seconds=0.01, force=True, **kw)
    return s.InitHpIo(req, timeout=10)


def stream(s, movie=True, ph=True, interval=0.01, modules=()):
    return s.StreamImages(pb.StreamImagesRequest(
        stream_movie_data=movie, stream_pulse_height_data=ph,
        update_interval_seconds=interval, module_ids=list(modules)), timeout=30)


def take(responses, n):
    out = []
    for r in responses:
        out.append(r)
        if len(out) == n:
            responses.cancel()
            return out
    raise AssertionError(f"stream ended after {len(out)} of {n}")


def code_of(call):
    with pytest.raises(grpc.RpcError) as e:
        result = call()
        # A server-streaming call fails on the first read.
        if hasattr(result, "__next__"):
            next(result)
    return e.value.code()


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_every_rpc_works_over_both_transports(server, transport):
    s = stub(getattr(server, transport))
    s.Ping(Empty(), timeout=5)
    assert init_sim(s).success
    images = [r.pano_image for r in take(stream(s), 20)]
    for image in images:
        assert list(image.shape) in ([16, 16], [32, 32])
        assert len(image.image_array) == image.shape[0] * image.shape[1]
        assert image.file.endswith(".pff") and image.type in (MOVIE, PULSE_HEIGHT)
    responses = take(stream(s, interval=0.05), 3)
    assert all(r.name and r.timestamp.seconds > 0 for r in responses)
    assert s.UploadImages(iter([]), timeout=5) == Empty()


def test_status_codes_before_init(server):
    s = stub(server.tcp)
    assert code_of(lambda: stream(s)) == grpc.StatusCode.FAILED_PRECONDITION
    image = pb.PanoImage(type=MOVIE, shape=[32, 32], bytes_per_pixel=2, image_array=[0] * 1024)
    assert code_of(lambda: s.UploadImages(iter([pb.UploadImageRequest(pano_image=image)]), timeout=5)) \
        == grpc.StatusCode.FAILED_PRECONDITION


def test_init_hp_io_status_codes(server, tmp_path):
    s = stub(server.unix)
    with pytest.raises(grpc.RpcError) as e:
        s.InitHpIo(pb.InitHpIoRequest(data_dir=str(tmp_path / "nope"), update_interval_seconds=0.1), timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "does not exist" in e.value.details()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert code_of(lambda: s.InitHpIo(pb.InitHpIoRequest(data_dir=str(empty), update_interval_seconds=0.1),
                                      timeout=5)) == grpc.StatusCode.FAILED_PRECONDITION
    for bad in (0.0000001, 1e9):
        assert code_of(lambda: s.InitHpIo(pb.InitHpIoRequest(simulate_daq=True, update_interval_seconds=bad),
                                          timeout=5)) == grpc.StatusCode.INVALID_ARGUMENT


def test_stream_status_codes_after_init(server):
    s = stub(server.tcp)
    assert init_sim(s).success
    assert code_of(lambda: stream(s, movie=False, ph=False)) == grpc.StatusCode.INVALID_ARGUMENT
    # SPEC §3: NaN, +inf and above max_client_update_interval_seconds are
    # refused; 0 and negative intervals are served (see test_pacing.py).
    for bad in (float("nan"), float("inf"), 1e6):
        assert code_of(lambda: stream(s, interval=bad)) == grpc.StatusCode.INVALID_ARGUMENT


def test_forced_reinit_cancels_streams_and_unforced_is_refused(server):
    s = stub(server.tcp)
    assert init_sim(s).success
    responses = stream(s, interval=0.05)
    next(responses)
    assert code_of(lambda: s.InitHpIo(pb.InitHpIoRequest(simulate_daq=True, update_interval_seconds=0.01,
                                                         force=False), timeout=10)) \
        == grpc.StatusCode.FAILED_PRECONDITION
    assert init_sim(s).success
    with pytest.raises(grpc.RpcError) as e:
        for _ in responses:
            pass
    assert e.value.code() == grpc.StatusCode.CANCELLED


def test_more_streams_than_allowed_is_resource_exhausted(make_server, tmp_path):
    cfg = tmp_path / "server.toml"
    cfg.write_text("max_concurrent_rpcs = 2\n")
    server = make_server("--config", str(cfg), "--init-sim")
    s = stub(server.tcp)
    a, b = stream(s), stream(s)
    next(a), next(b)
    assert code_of(lambda: stream(s)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    a.cancel()
    b.cancel()


def test_malformed_uploads_are_invalid(server):
    s = stub(server.tcp)
    assert init_sim(s).success
    bad = [
        pb.PanoImage(type=MOVIE, shape=[16, 16], bytes_per_pixel=2, image_array=[0] * 256),
        pb.PanoImage(type=PULSE_HEIGHT, shape=[16, 16], bytes_per_pixel=2, image_array=[0] * 255),
        pb.PanoImage(type=0, shape=[32, 32], bytes_per_pixel=2, image_array=[0] * 1024),
        pb.PanoImage(type=MOVIE, shape=[32, 32], bytes_per_pixel=1, image_array=[300] * 1024),
    ]
    for image in bad:
        assert code_of(lambda: s.UploadImages(iter([pb.UploadImageRequest(pano_image=image)]), timeout=5)) \
            == grpc.StatusCode.INVALID_ARGUMENT


def test_an_upload_comes_back_unchanged(server):
    s = stub(server.unix)
    assert init_sim(s).success
    responses = stream(s, interval=0.0, modules=[4242])
    got = []
    reader = threading.Thread(target=lambda: got.extend(take(responses, 1)))
    reader.start()
    time.sleep(0.5)
    image = pb.PanoImage(type=PULSE_HEIGHT, shape=[16, 16], bytes_per_pixel=2, module_id=4242,
                         image_array=[(i * 977) % 65536 for i in range(256)], file="up.pff", frame_number=3)
    image.header.update({"quabo_num": 1, "tv_sec": 1721882094})
    s.UploadImages(iter([pb.UploadImageRequest(pano_image=image)]), timeout=5)
    reader.join(timeout=10)
    assert got and got[0].pano_image == image


def test_streamed_pixels_equal_the_frames_on_disk(server, daq_tree):
    s = stub(server.tcp)
    reply = s.InitHpIo(pb.InitHpIoRequest(data_dir=str(daq_tree), update_interval_seconds=0.01), timeout=10)
    assert reply.success, reply.error_message
    files = {p.name: p for p in daq_tree.glob("module_*/*.pffd/*.pff")}
    for r in take(stream(s, interval=0.0), 100):
        image = r.pano_image
        path = files.get(image.file) or next(daq_tree.glob(f"module_*/*.pffd/{image.file}"))
        header, pixels = read_frame(path, image.frame_number, image.bytes_per_pixel, len(image.image_array))
        assert list(image.image_array) == pixels, f"{image.file} frame {image.frame_number}"
        assert MessageToDict(image.header) == json.loads(header)


def read_frame(path, n, bpp, npix):
    """Frame n of a PFF file: every frame has the size of the first."""
    data = path.read_bytes()
    hlen = data.index(b"\n\n*") + 3
    size = hlen + bpp * npix
    frame = data[n * size:(n + 1) * size]
    assert len(frame) == size and frame[0:1] == b"{" and frame[hlen - 3:hlen] == b"\n\n*"
    image = frame[hlen:]
    pixels = list(image) if bpp == 1 else [int.from_bytes(image[i:i + 2], "little") for i in range(0, len(image), 2)]
    return frame[:hlen - 3].decode(), pixels


def test_reflection_lists_the_service(server):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
    from google.protobuf.descriptor_pool import DescriptorPool
    db = ProtoReflectionDescriptorDatabase(grpc.insecure_channel(server.tcp))
    assert "daqdata.DaqData" in db.get_services()
    service = DescriptorPool(db).FindServiceByName("daqdata.DaqData")
    assert {m.name for m in service.methods} == {"StreamImages", "InitHpIo", "Ping", "UploadImages",
                                                "Status", "StreamHashpipeStatus"}


def test_sigterm_ends_streams_and_removes_the_socket(make_server):
    server = make_server("--init-sim")
    s = stub(server.tcp)
    responses = stream(s, interval=0.01)
    next(responses)
    server.proc.send_signal(signal.SIGTERM)
    with pytest.raises(grpc.RpcError) as e:
        for _ in responses:
            pass
    assert e.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    assert server.proc.wait(timeout=10) == 0
    assert not server.sock.exists()


def upstream_status_response():
    """StatusResponse as the newer upstream client declares it (bool 1,
    string 2), built in a pool of its own: nothing of our .proto is used to
    read the answer."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    f = descriptor_pb2.FileDescriptorProto(name="upstream_status.proto", package="upstream_check")
    m = f.message_type.add(name="StatusResponse")
    m.field.add(name="hp_io_initialized", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
                label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    m.field.add(name="message", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("upstream_check.StatusResponse"))


def test_a_raw_status_call_as_the_newer_upstream_client_makes_it(server, tmp_path):
    StatusResponse = upstream_status_response()
    status = channel(server.tcp).unary_unary(
        "/daqdata.DaqData/Status",
        request_serializer=Empty.SerializeToString,
        response_deserializer=StatusResponse.FromString,
    )
    before = status(Empty(), timeout=5)
    assert not before.hp_io_initialized
    assert "not initialized" in before.message and "\n" not in before.message
    # A refused InitHpIo is why hp_io still does not run.
    s = stub(server.unix)
    empty = tmp_path / "no_run_here"
    empty.mkdir()
    assert code_of(lambda: s.InitHpIo(pb.InitHpIoRequest(data_dir=str(empty), update_interval_seconds=0.1),
                                      timeout=5)) == grpc.StatusCode.FAILED_PRECONDITION
    refused = status(Empty(), timeout=5)
    assert not refused.hp_io_initialized and "no active run" in refused.message, refused.message
    assert init_sim(s).success
    after = status(Empty(), timeout=5)
    assert after.hp_io_initialized and "simulated run" in after.message, after.message
