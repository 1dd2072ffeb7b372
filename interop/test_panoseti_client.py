"""The Python clients of panoseti-grpc 0.3.5, unchanged, against the Rust
server: what observatory users run today must keep working.

Runs in its own pytest process (with the other test_panoseti_*.py files):
panoseti_grpc registers daq_data.proto in protobuf's default pool, as do the
stubs ourproto.py generates for test_wire.py and test_pacing.py."""

import asyncio

import pytest
# Installed by .ci/run: a missing panoseti-grpc is a failure, not a skip.
from panoseti_grpc.daq_data.client import AioDaqDataClient, DaqDataClient
from panoseti_grpc.generated.daq_data_pb2 import PanoImage


def daq_config(*hosts):
    return {"daq_nodes": [{"ip_addr": h, "data_dir": ""} for h in hosts]}


@pytest.fixture
def tcp_port(server, monkeypatch):
    # The Python client always dials port 50051 for a host name; point it
    # at this test's server.
    monkeypatch.setattr(DaqDataClient, "GRPC_PORT", server.port)
    monkeypatch.setattr(AioDaqDataClient, "GRPC_PORT", server.port, raising=False)
    return server.port


def test_sync_client_pings_inits_and_streams_over_unix_and_tcp(server, tcp_port):
    hosts = [server.unix, "127.0.0.1"]
    with DaqDataClient(daq_config(*hosts), None) as client:
        assert sorted(client.get_valid_daq_hosts()) == sorted(hosts)
        assert client.init_sim(hosts)
        seen = []
        for image in client.stream_images(hosts, True, True, 0.05):
            seen.append(image)
            if len(seen) == 20:
                break
        for image in seen:
            assert image["image_array"].shape in ((16, 16), (32, 32))
            assert image["type"] in ("MOVIE", "PULSE_HEIGHT")
            assert "pkt_unix_timestamp" in image["header"]
        assert "DaqData" in client.reflect_services(hosts)


def test_sync_client_sees_failed_precondition_before_init(server):
    import grpc
    with DaqDataClient(daq_config(server.unix), None) as client:
        with pytest.raises(grpc.RpcError) as e:
            next(iter(client.stream_images(server.unix, True, True, 0.1)))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_async_client_streams_and_uploads(server):
    async def run():
        async with AioDaqDataClient(daq_config(server.unix), None) as client:
            assert await client.ping(server.unix)
            assert await client.init_sim(server.unix)
            got = []
            stream = await client.stream_images(server.unix, False, True, 0.0, module_ids=(77,))

            async def uploads():
                for i in range(3):
                    image = PanoImage(type=PanoImage.Type.PULSE_HEIGHT, shape=[16, 16], bytes_per_pixel=2,
                                      module_id=77, image_array=[i] * 256, file="up.pff", frame_number=i)
                    image.header.update({"quabo_num": 0, "pkt_num": i, "pkt_tai": 531, "pkt_nsec": 0,
                                         "tv_sec": 1721882094, "tv_usec": 0})
                    yield image
                    await asyncio.sleep(0.2)

            upload = asyncio.create_task(client.upload_images(server.unix, uploads()))
            async for image in stream:
                got.append(image)
                if image["frame_number"] == 2:
                    break
            await upload
            numbers = [g["frame_number"] for g in got]
            assert numbers == sorted(set(numbers)), numbers
            assert got[-1]["image_array"].max() == 2 and got[-1]["module_id"] == 77

    asyncio.run(asyncio.wait_for(run(), 60))
