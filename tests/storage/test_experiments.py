"""Per-unit experiment metrics aggregated from stored events in a real DuckDB file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from kaizend.storage.events import EventStore
from kaizend.storage.experiments import UNIT_COLUMNS, unit_metrics

T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)


def query(qid: str, arm: str, version: str, minutes: float = 1, **fields: object) -> dict:
    return {"event_id": f"e-{qid}", "query_id": qid, "ts": T0 + timedelta(minutes=minutes),
            "task": "parser", "text": "t", "model_version": version, "arm": arm,
            "latency_ms": 10.0, "schema_version": 1, "ingested_at": T0} | fields  # fmt: skip


def signal(eid: str, qid: str, minutes: float, **fields: object) -> dict:
    return {"event_id": eid, "query_id": qid, "ts": T0 + timedelta(minutes=minutes),
            "schema_version": 1, "ingested_at": T0} | fields  # fmt: skip


def test_success_needs_positive_feedback_and_no_correction_within_the_window(
    tmp_path: Path,
) -> None:
    store = EventStore(tmp_path / "k.duckdb")
    store.write({
        "query_events": [
            query("a", "champion", "v0"),                      # rated 5: success
            query("b", "champion", "v0", latency_ms=30.0),     # thumbs up, corrected at +5 min
            query("c", "champion", "v0", error="boom"),        # no feedback, failed
            query("d", "challenger", "v1"),                    # rated 2
            query("e", "challenger", "v1"),                    # rated 4, corrected after 2 h
            query("f", "challenger", "v9"),                    # another version: not counted
            query("g", "champion", "v0", minutes=90),          # after the window's end
        ],
        "feedback_events": [
            signal("f1", "a", 2, rating=5), signal("f2", "b", 2, thumbs="up"),
            signal("f3", "d", 2, rating=2), signal("f4", "e", 2, rating=4),
        ],
        "correction_events": [
            signal("c1", "b", 6, corrected_output="{}"),
            signal("c2", "e", 130, corrected_output="{}"),
        ],
    })  # fmt: skip
    metrics = unit_metrics(
        store.cursor(), task="parser", champion="v0", challenger="v1",
        start=T0, end=T0 + timedelta(minutes=60), attribution_s=3600,
    )  # fmt: skip
    # No unit_id: every query is a unit of its own.
    champion, challenger = totals(metrics["champion"]), totals(metrics["challenger"])
    assert metrics["champion"]["queries"].tolist() == [1, 1, 1]
    assert (champion["queries"], champion["successes"], champion["corrections"]) == (3, 1, 1)
    assert (champion["errors"], champion["latency_sum"]) == (1, 50.0)
    assert (champion["rated"], champion["rating_sum"]) == (1, 5.0)
    # e's correction came after the attribution window: e counts as a success.
    assert (challenger["queries"], challenger["successes"], challenger["corrections"]) == (2, 1, 0)
    assert (challenger["rated"], challenger["rating_sum"]) == (2, 6.0)


def totals(units: dict) -> dict[str, float]:
    return {column: float(values.sum()) for column, values in units.items()}


def test_queries_are_summed_per_unit_with_the_units_pre_period_history(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "k.duckdb")
    store.write({
        "query_events": [
            # Before the experiment (minutes < 0): u1's history, on the champion of then.
            query("p1", "champion", "v-old", minutes=-30, unit_id="u1"),
            query("p2", "champion", "v-old", minutes=-20, unit_id="u1", error="boom"),
            query("p3", "shadow", "v1", minutes=-20, unit_id="u1"),   # shadow: not history
            query("p4", "champion", "v-old", minutes=-5000, unit_id="u1"),  # outside the window
            query("a1", "champion", "v0", unit_id="u1"),
            query("a2", "champion", "v0", unit_id="u1", latency_ms=2000.0),
            query("a3", "champion", "v0", unit_id="u1"),
            query("b1", "challenger", "v1", unit_id="u2"),            # no history
            query("c1", "challenger", "v1"),                           # no unit: its own unit
            query("d1", "champion", "v0", unit_id="u3"),               # u3 in both arms: a
            query("d2", "challenger", "v1", unit_id="u3"),             # challenger unit
        ],
        "feedback_events": [
            signal("f1", "p1", -29, rating=5), signal("f2", "a1", 2, rating=5),
            signal("f3", "a2", 2, thumbs="up"), signal("f4", "b1", 2, rating=1),
        ],
    })  # fmt: skip
    metrics = unit_metrics(
        store.cursor(), task="parser", champion="v0", challenger="v1", start=T0, end=None,
        attribution_s=3600, latency_budget_ms=1000.0, pre_start=T0 - timedelta(days=1),
    )  # fmt: skip
    champion, challenger = metrics["champion"], metrics["challenger"]
    assert set(champion) == set(UNIT_COLUMNS)
    row = {column: values.tolist() for column, values in champion.items()}
    assert (row["queries"], row["successes"], row["slow"], row["rated"]) == ([3], [2], [1], [1])
    assert (row["pre_queries"], row["pre_successes"], row["pre_errors"]) == ([2], [1], [1])
    assert challenger["queries"].tolist() == [1, 1, 1]
    assert challenger["pre_queries"].tolist() == [0, 0, 0]
    without = unit_metrics(
        store.cursor(), task="parser", champion="v0", challenger="v1", start=T0, end=None,
        attribution_s=3600,
    )  # fmt: skip
    assert without["champion"]["pre_queries"].tolist() == [0]


def test_an_arm_without_units_has_no_rows(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "k.duckdb")
    metrics = unit_metrics(
        store.cursor(), task="parser", champion="v0", challenger="v1",
        start=T0, end=None, attribution_s=60,
    )  # fmt: skip
    assert metrics["challenger"]["queries"].size == 0


def test_a_unit_a_step_moves_counts_in_the_challenger_with_its_challenger_answers(
    tmp_path: Path,
) -> None:
    """At a step's start the gateway still answers with the routing of before for a moment:
    the units the step moves get a few champion answers, then the challenger's. They are the
    step's challenger units, however many questions they ask, and their champion answers of
    the step are left out; a unit only the champion answered stays a champion unit."""
    store = EventStore(tmp_path / "k.duckdb")
    heavy = [query(f"h{i}", "champion", "v0", minutes=0.01 * i, unit_id="heavy") for i in range(3)]
    heavy += [query(f"H{i}", "challenger", "v1", minutes=1 + i, unit_id="heavy") for i in range(5)]
    store.write({
        "query_events": [
            *heavy,
            query("l1", "champion", "v0", minutes=0.02, unit_id="light"),  # in flight
            query("l2", "challenger", "v1", minutes=3, unit_id="light"),
            query("s1", "champion", "v0", minutes=2, unit_id="stays"),
            query("s2", "champion", "v0", minutes=4, unit_id="stays"),
        ],
        "feedback_events": [
            signal("f1", "h0", 1, rating=5), signal("f2", "H0", 2, rating=5),
            signal("f3", "H1", 3, rating=1), signal("f4", "s1", 3, rating=5),
        ],
    })  # fmt: skip
    metrics = unit_metrics(
        store.cursor(), task="parser", champion="v0", challenger="v1", start=T0, end=None,
        attribution_s=3600,
    )  # fmt: skip
    champion, challenger = metrics["champion"], metrics["challenger"]
    # Units in order of their ids: heavy, light.
    assert challenger["queries"].tolist() == [5, 1]
    assert challenger["successes"].tolist() == [1, 0]
    assert (champion["queries"].tolist(), champion["successes"].tolist()) == ([2], [1])
