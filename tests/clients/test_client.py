"""The slim client: the shared routing vectors, what it refuses to publish, and that it stands
alone (nats-py and pydantic, nothing of kaizend's)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from kaizend_client import InvalidEvent, Routing, encode_event, unit_position

from tests.conftest import event

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "schemas" / "routing-vectors.json").read_text())["vectors"]


def test_the_routing_vectors() -> None:
    assert len(VECTORS) >= 20
    arms = set()
    for v in VECTORS:
        # Recomputed without the client: the file says what the hash is, independently.
        prefix = hashlib.sha256(f"{v['salt']}:{v['unit_id']}".encode()).digest()[:8]
        assert prefix.hex() == v["sha256_prefix"]
        exact = Fraction(int.from_bytes(prefix, "big"), 2**64)
        assert v["position"] == float(exact)
        assert unit_position(v["salt"], v["unit_id"]) == v["position"]
        routing = Routing(task="t", champion="v1", challenger="v2", challenger_weight=v["share"],
                          salt=v["salt"])  # fmt: skip
        arm, version = routing.assign(v["unit_id"])
        assert arm == v["arm"], v
        assert version == ("v2" if arm == "challenger" else "v1")
        arms.add(arm)
    assert arms == {"champion", "challenger"}


def test_the_vectors_hold_the_edges() -> None:
    # A share equal to a unit's position keeps it on the champion; one double above moves it.
    edges = [v for v in VECTORS if v["share"] == v["position"]]
    assert edges and all(v["arm"] == "champion" for v in edges)
    above = [v for v in VECTORS if v["share"] == math.nextafter(v["position"], 1.0)]
    assert above and all(v["arm"] == "challenger" for v in above)
    assert any(not v["unit_id"].isascii() for v in VECTORS)  # UTF-8 before hashing


def test_the_producer_refuses_what_ingestion_would_reject() -> None:
    good = event("query", "e1")
    assert json.loads(encode_event("query", good)) == good
    cases = [
        ("feedback", event("feedback", "e1", rating=9), "rating"),
        ("query", event("query", "e1", task=" "), "task"),
        ("query", event("query", "e1", output={"x": float("nan")}), "query"),
        ("nonsense", event("query", "e1"), "kind"),
    ]
    for kind, payload, field in cases:
        with pytest.raises(InvalidEvent) as refused:
            encode_event(kind, payload)
        assert refused.value.field == field, refused.value
    with pytest.raises(InvalidEvent, match="must not be blank"):
        encode_event("query", event("query", "e1", task=" "))


def test_the_client_imports_nothing_of_kaizend() -> None:
    probe = (
        "import sys, kaizend_client, kaizend_client.schemas; "
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "clients" / "python")}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                         check=True, cwd=ROOT / "clients")  # fmt: skip
    loaded = set(json.loads(out.stdout.replace("'", '"')))
    assert {"kaizend_client", "nats", "pydantic"} <= loaded
    assert not loaded & {"kaizend", "core", "storage", "handlers", "duckdb", "torch", "faststream"}


def test_a_request_the_gateway_accepts_records_as_a_query_event() -> None:
    # The gateway's request carries the query event's bounds: what it answers, it can record.
    from kaizend_client import InferRequest, QueryEvent
    from pydantic import ValidationError

    for bad in ({"text": ""}, {"text": "a\x00b"}, {"text": "x" * 10_001},
                {"text": "t", "query_id": " "}, {"text": "t", "unit_id": "u" * 257}):  # fmt: skip
        with pytest.raises(ValidationError):
            InferRequest.model_validate(bad)
    request = InferRequest(text="x" * 10_000, unit_id="u" * 256, query_id="q" * 256)
    QueryEvent(
        event_id="e", query_id=request.query_id, ts="2026-12-01T00:00:00Z", task="parser",
        text=request.text, model_version="v", unit_id=request.unit_id, latency_ms=1,
    )  # fmt: skip
