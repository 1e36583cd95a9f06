"""Routing: which model version answers whom, kept in a NATS key-value bucket.

The daemon writes one entry per task into the bucket ``routing.bucket`` (``kaizen_routing``
by default; key = task); every producer watches the bucket and assigns each request's unit (a
user or a session) to an arm:

    u = first 8 bytes of sha256("<salt>:<unit_id>") (UTF-8), big-endian, divided by 2**64
    arm = "challenger" if there is a challenger and u < challenger_weight else "champion"

Assignment is deterministic and sticky: the same unit gets the same arm for as long as the
salt and weight stay, and when the ramp raises the weight only champion units move over (a
unit's ``u`` never changes within an experiment, which has one salt). Clients in other
languages check themselves against the shared vectors in ``schemas/routing-vectors.json``.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field, model_validator

BUCKET = "kaizen_routing"
"""The routing bucket's default name (the daemon's ``routing.bucket``)."""

Arm = Literal["champion", "challenger"]


class Routing(BaseModel):
    """One task's routing entry: the value of key ``<task>`` in the routing bucket, written by
    the daemon only."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    task: str = Field(min_length=1, description="The task, also the entry's key.")
    champion: str = Field(min_length=1, description="Version id the champion arm serves.")
    challenger: str | None = Field(None, description="Version id of the challenger, if any.")
    challenger_weight: float = Field(0.0, ge=0.0, le=1.0, description="Challenger's share.")
    experiment_id: str | None = None
    salt: str = Field("", description="Changes with every experiment: a new assignment.")
    champion_artifact: str | None = Field(
        None, description="The champion's version directory; None for a built-in version 0."
    )
    challenger_artifact: str | None = Field(None, description="The challenger's directory.")
    shadow: bool = Field(
        False, description="The gateway also runs the challenger, unanswered, on champion units."
    )

    @model_validator(mode="after")
    def _challenger_needs_a_version(self) -> Routing:
        if self.challenger_weight > 0 and not self.challenger:
            raise ValueError("challenger_weight > 0 needs a challenger version")
        return self

    def assign(self, unit_id: str) -> tuple[Arm, str]:
        """The arm and version for ``unit_id``."""
        if self.challenger and unit_position(self.salt, unit_id) < self.challenger_weight:
            return "challenger", self.challenger
        return "champion", self.champion

    def artifact(self, version: str) -> str | None:
        """The directory of ``version`` (one of this entry's two), None for a built-in."""
        if version == self.challenger:
            return self.challenger_artifact
        return self.champion_artifact


def unit_position(salt: str, unit_id: str) -> float:
    """The unit's fixed place in [0, 1) for this salt."""
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


async def open_routing(js: JetStreamContext, bucket: str = BUCKET) -> KeyValue:
    """The routing bucket, for reading and watching (producers never write it); raises
    ``nats.js.errors.BucketNotFoundError`` until the daemon has created it."""
    return await js.key_value(bucket)
