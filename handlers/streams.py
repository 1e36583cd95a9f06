"""The JetStream streams kaizend owns, replicated as configured.

The events stream, the jobs stream and the routing bucket (a key-value bucket is the stream
``KV_<bucket>``) are created with the configured number of replicas. At start an existing
one is checked against the configuration: a different count is updated in place (JetStream
can change a stream's replicas on a cluster), and when the server refuses, the start fails
naming the configuration key.
"""

from __future__ import annotations

import asyncio
import logging
import time

from kaizend.core.errors import KaizendError
from nats.js import JetStreamContext
from nats.js.api import StreamConfig, StreamInfo
from nats.js.errors import APIError, NotFoundError

log = logging.getLogger(__name__)

PLACEMENT_TIMEOUT_S = 30.0


class ReplicasRefused(KaizendError, RuntimeError):
    """JetStream cannot hold ``stream`` with the ``replicas`` that config ``key`` asks for."""

    def __init__(
        self, stream: str, key: str, replicas: int, found: int | None, why: str | None
    ) -> None:
        has = "does not exist yet" if found is None else f"has {found}"
        super().__init__(
            f"NATS refused stream {stream!r} with {replicas} replicas (config key {key!r}; the "
            f"stream {has}): {why}. Set {key} to what the NATS deployment can hold: 1 on a "
            "single server, at most the number of JetStream servers in the cluster"
        )
        self.stream = stream
        self.key = key
        self.replicas = replicas
        self.found = found


async def ensure_replicas(
    js: JetStreamContext, stream: str, replicas: int, *, key: str
) -> StreamInfo:
    """Bring the existing ``stream`` to ``replicas`` copies (configuration ``key``)."""
    info = await js.stream_info(stream)
    found = info.config.num_replicas or 1
    if found == replicas:
        return info
    config = info.config
    config.num_replicas = replicas
    try:
        info = await js.update_stream(config)
    except APIError as err:
        raise ReplicasRefused(stream, key, replicas, found, err.description) from err
    log.warning("stream %s: replicas %d -> %d (%s)", stream, found, replicas, key)
    return await _placed(js, stream, replicas)


async def _placed(
    js: JetStreamContext, stream: str, replicas: int, timeout_s: float = PLACEMENT_TIMEOUT_S
) -> StreamInfo:
    """Wait until the updated ``stream`` has a leader and every copy is current: right after
    an update its consumers cannot be created or bound while the cluster re-elects."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = await js.stream_info(stream)
        cluster = info.cluster
        peers = (cluster.replicas or []) if cluster is not None else []
        if (
            (cluster is None or cluster.leader)
            and len(peers) == replicas - 1
            and all(peer.current for peer in peers)
        ):
            return info
        if time.monotonic() > deadline:
            log.warning("stream %s: its %d copies are not all current after %.0f s; going on",
                        stream, replicas, timeout_s)  # fmt: skip
            return info
        await asyncio.sleep(0.25)


async def ensure_stream(
    js: JetStreamContext, config: StreamConfig, *, key: str, check_replicas: bool = True
) -> StreamInfo:
    """Create the stream ``config`` describes, or check an existing one's replicas against
    ``config.num_replicas`` (configuration ``key``; not with ``check_replicas`` false, for a
    client that is not the stream's owner); other settings of an existing stream are left as
    they are."""
    assert config.name is not None
    replicas = config.num_replicas or 1
    try:
        info = await js.stream_info(config.name)
    except NotFoundError:
        try:
            return await js.add_stream(config)
        except APIError as err:
            if replicas == 1:
                raise
            raise ReplicasRefused(config.name, key, replicas, None, err.description) from err
    if not check_replicas:
        return info
    return await ensure_replicas(js, config.name, replicas, key=key)
