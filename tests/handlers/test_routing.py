"""Routing: deterministic, sticky assignment; the bucket the daemon writes and producers watch."""

from __future__ import annotations

import pytest
from kaizend.handlers.routing import Routing, put_routing, routing_bucket
from kaizend_client import Producer

from tests.conftest import RunningDaemon, eventually

UNITS = [f"user-{i}" for i in range(20_000)]


def challenger_units(routing: Routing) -> set[str]:
    return {unit for unit in UNITS if routing.assign(unit)[0] == "challenger"}


def test_assignment_matches_the_weight_and_is_sticky_as_the_ramp_rises() -> None:
    step = Routing(task="parser", champion="parser-v0", challenger="parser-v1",
                   challenger_weight=0.10, salt="exp-1")  # fmt: skip
    at_10 = challenger_units(step)
    at_25 = challenger_units(step.model_copy(update={"challenger_weight": 0.25}))
    assert len(at_10) / len(UNITS) == pytest.approx(0.10, abs=0.01)
    assert len(at_25) / len(UNITS) == pytest.approx(0.25, abs=0.015)
    assert at_10 <= at_25  # raising the weight only moves champion units over
    assert step.assign("user-7") == step.assign("user-7")
    # A new experiment (salt) draws a new assignment: about 10% of 10% overlap.
    other = challenger_units(step.model_copy(update={"salt": "exp-2"}))
    assert len(other & at_10) / len(at_10) == pytest.approx(0.10, abs=0.03)


def test_an_entry_cannot_send_traffic_to_a_missing_challenger() -> None:
    with pytest.raises(ValueError, match="needs a challenger version"):
        Routing(task="parser", champion="parser-v0", challenger_weight=0.5)
    assert Routing(task="parser", champion="parser-v0").assign("u") == ("champion", "parser-v0")


async def test_producers_follow_the_bucket_and_their_events_carry_arm_and_version(
    running: RunningDaemon,
) -> None:
    producer = await Producer.start(running.nc, service="fit-search")
    try:
        # The daemon gave every task an entry: all traffic to the champion.
        assert producer.route("parser", "user-1") == ("champion", "parser-v0")
        assert producer.route("retriever", "user-1") == ("champion", "retriever-v0")
        assert producer.route("unknown-task", "user-1") == ("champion", "unknown")

        kv = await routing_bucket(running.js)
        await put_routing(kv, Routing(task="parser", champion="parser-v0",
                                      challenger="parser-v1", challenger_weight=1.0,
                                      experiment_id="exp-1", salt="s"))  # fmt: skip
        await eventually(lambda: producer.route("parser", "user-1")[0] == "challenger")

        query_id = await producer.query(
            "parser", "wind sites in berkshire", unit_id="user-1",
            output={"technology": "Wind"}, latency_ms=8.0,
        )  # fmt: skip
        await producer.feedback(query_id, rating=5)
        await producer.correction(query_id, {"technology": "Wind", "location": "Berkshire"})

        async def stored() -> bool:
            result = await running.sql(
                "SELECT arm, model_version, unit_id, n_feedback, n_corrections "
                f"FROM query_outcomes WHERE query_id = '{query_id}'"
            )
            return result["rows"] == [["challenger", "parser-v1", "user-1", 1, 1]]

        await eventually(stored)
    finally:
        await producer.stop()
