"""panoseti-grpc 0.3.5's clients, unchanged, against a gateway (SPEC §8):
two simulated DAQ nodes with different module ids behind one gateway
address, as the observatory's head node serves them.

Runs in the panoseti pytest process (see test_panoseti_client.py)."""

import asyncio
import json

import pytest
# Installed by .ci/run: a missing panoseti-grpc is a failure, not a skip.
from panoseti_grpc.daq_data.client import AioDaqDataClient

from test_panoseti_cli import run_for_a_while


@pytest.fixture
def observatory(make_server, tmp_path):
    """Two simulated nodes (modules 10 and 20), initialized, and a gateway
    relaying both: the gateway is returned, the nodes' ids beside it."""
    nodes = []
    for module in (10, 20):
        config = tmp_path / f"node{module}.toml"
        config.write_text(
            f'metrics_listen = ""\n'
            f'[simulate]\nmodule_ids = [{module}]\nframes_per_second = 40.0\n'
            f'[hashpipe_sockets]\npath_template = "{tmp_path}/hp{module}_{{dp_name}}.sock"\n')
        nodes.append(make_server("--config", str(config), "--init-sim"))
    upstreams = [arg for n in nodes for arg in ("--upstream", n.unix)]
    gateway = make_server("--metrics-listen", "", *upstreams)
    return gateway, {10, 20}


def test_async_client_gets_every_node_through_the_gateway(observatory):
    gateway, modules = observatory

    async def run():
        config = {"daq_nodes": [{"ip_addr": gateway.unix, "data_dir": ""}]}
        async with AioDaqDataClient(config, None) as client:
            assert await client.ping(gateway.unix)
            stream = await client.stream_images(gateway.unix, True, True, 0.1)
            seen = set()
            async for image in stream:
                seen.add(image["module_id"])
                assert image["image_array"].shape in ((16, 16), (32, 32))
                if seen >= modules:
                    break
            assert seen == modules, seen

    asyncio.run(asyncio.wait_for(run(), timeout=60))


def test_cli_plot_view_through_the_gateway(observatory, tmp_path):
    gateway, _ = observatory
    host = gateway.unix
    (tmp_path / "daq_config.json").write_text(json.dumps({
        "head_node_data_dir": "", "head_node_ip_addr": "localhost",
        "daq_nodes": [{"ip_addr": host, "user_name": "", "data_dir": "", "module_ids": ""}]}))
    (tmp_path / "network_config.json").write_text(json.dumps({
        "daq_nodes": [{"ip_addr": host, "port_forwarding": {"status": False, "gw_ip": "localhost", "port": 22}}]}))
    out, images = run_for_a_while(tmp_path, gateway, "--plot-view")
    assert images > 0, out
