"""Python gRPC against a server with [access] token files (SPEC §6): the
unix socket stays the local operator's door, so the Python tools on the
DAQ node keep working unchanged, while TCP without a token gets nothing.

(With no [access] section every other test here runs as the Python server
behaves: anyone may do anything.)"""

import os
import secrets

import grpc
from google.protobuf.empty_pb2 import Empty

from ourproto import pb, stub
from test_wire import code_of, init_sim, stream, take


def private(path, text):
    path.write_text(text)
    os.chmod(path, 0o600)


def hardened(make_server, tmp_path):
    """A server whose config names an operator and a viewer token file."""
    op, view = secrets.token_hex(32), secrets.token_hex(32)
    cfg = tmp_path / "access"
    cfg.mkdir()
    private(cfg / "operators", f"alice {op}\n")
    private(cfg / "viewers", f"# the night shift\nbob {view}\n")
    config = cfg / "daq.toml"
    config.write_text(
        f'[hashpipe_sockets]\npath_template = "{cfg}/hp_{{dp_name}}.sock"\n'
        f'[access]\noperator_tokens_file = "operators"\nviewer_tokens_file = "viewers"\n'
    )
    return make_server("--config", str(config)), op, view


def bearer(token):
    return [("authorization", f"Bearer {token}")]


def test_the_unix_socket_is_the_operators_door_and_tcp_needs_a_token(make_server, tmp_path):
    server, op, view = hardened(make_server, tmp_path)

    # On the unix socket, grpcio with no token does everything, as before.
    unix = stub(server.unix)
    unix.Ping(Empty(), timeout=5)
    assert init_sim(unix).success
    assert len(take(stream(unix), 10)) == 10
    image = pb.PanoImage(type=pb.PanoImage.Type.Value("MOVIE"), shape=[32, 32], bytes_per_pixel=2,
                         module_id=5, image_array=[1] * 1024, file="up.pff")
    assert unix.UploadImages(iter([pb.UploadImageRequest(pano_image=image)]), timeout=5) == Empty()

    # Over TCP without a token: UNAUTHENTICATED, before any work.
    tcp = stub(server.tcp)
    req = pb.InitHpIoRequest(simulate_daq=True, update_interval_seconds=0.01, force=True)
    assert code_of(lambda: tcp.InitHpIo(req, timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(lambda: tcp.Ping(Empty(), timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(lambda: stream(tcp)) == grpc.StatusCode.UNAUTHENTICATED

    # A viewer token watches; only an operator token reconfigures.
    tcp.Ping(Empty(), timeout=5, metadata=bearer(view))
    with_view = tcp.StreamImages(pb.StreamImagesRequest(stream_movie_data=True, update_interval_seconds=0.01),
                                 timeout=30, metadata=bearer(view))
    assert len(take(with_view, 3)) == 3
    assert (code_of(lambda: tcp.InitHpIo(req, timeout=5, metadata=bearer(view)))
            == grpc.StatusCode.PERMISSION_DENIED)
    assert tcp.InitHpIo(req, timeout=10, metadata=bearer(op)).success

    # The unix socket's stream went on through all of it, and no token is logged.
    assert len(take(stream(unix), 5)) == 5
    log = (server.sock.parent / "server.log").read_text()
    assert op not in log and view not in log
