"""The routing bucket on the daemon's side: creating it, with its replicas, and writing it.

The entry, the sticky hash that assigns a unit to an arm, and how producers open the bucket
are the contract, in the slim client (:mod:`kaizend_client.routing`): one definition for the
producers, the gateway and the daemon. The daemon writes one entry per task into the bucket
``routing.bucket`` (``kaizen_routing`` by default; key = task).
"""

from __future__ import annotations

from kaizend.handlers.streams import ReplicasRefused, ensure_replicas
from kaizend_client.routing import BUCKET, Arm, Routing, unit_position
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import APIError, BucketNotFoundError
from nats.js.kv import KeyValue

__all__ = ["BUCKET", "Arm", "Routing", "put_routing", "routing_bucket", "unit_position"]

HISTORY = 16
"""Revisions the bucket keeps of each entry."""


async def routing_bucket(
    js: JetStreamContext, bucket: str = BUCKET, *, create: bool = False, replicas: int = 1
) -> KeyValue:
    """The routing bucket (``routing.bucket``); the daemon creates it with ``replicas``
    copies, or brings an existing one to them (``create``); producers only open it."""
    try:
        kv = await js.key_value(bucket)
    except BucketNotFoundError:
        if not create:
            raise
    else:
        if create:
            await ensure_replicas(js, f"KV_{bucket}", replicas, key="routing.replicas")
        return kv
    try:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=bucket, history=HISTORY, storage=StorageType.FILE, replicas=replicas
            )
        )
    except APIError as err:
        if replicas == 1:
            raise
        raise ReplicasRefused(f"KV_{bucket}", "routing.replicas", replicas, None,
                              err.description) from err  # fmt: skip


async def put_routing(kv: KeyValue, routing: Routing) -> int:
    """Write a task's entry; returns the bucket revision."""
    return await kv.put(routing.task, routing.model_dump_json().encode())
