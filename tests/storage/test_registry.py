"""The model registry: lifecycle of versions and the append-only alias history."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from kaizend.storage.events import EventStore
from kaizend.storage.registry import GateRecord, Registry, UnknownVersion


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(EventStore(tmp_path / "k.duckdb").cursor())


def test_first_start_registers_version_zero_as_champion_once(registry: Registry) -> None:
    first = registry.ensure_initial_champion("parser", base_model="rules", reason="initial")
    again = registry.ensure_initial_champion("parser", base_model="rules", reason="restart")
    assert first == again
    assert (first.version_id, first.status) == ("parser-v0", "champion")
    assert registry.alias("parser", "champion") == "parser-v0"
    rows = registry.con.execute("SELECT count(*) FROM alias_history").fetchone()[0]
    assert rows == 1


def test_promotion_retires_the_old_champion_and_history_answers_what_served_when(
    registry: Registry,
) -> None:
    registry.ensure_initial_champion("parser", base_model="rules", reason="initial")
    candidate = registry.register(
        "parser", base_model="smollm2-135m", reason="trained", parent_version="parser-v0",
        training_run="run-1", metrics={"exact_match": 0.97},
    )  # fmt: skip
    assert candidate.version_id == "parser-v1" and candidate.metrics == {"exact_match": 0.97}
    registry.make_challenger("parser-v1", "gate passed: +4.1 points exact match")
    assert registry.alias("parser", "challenger") == "parser-v1"
    before_promotion = datetime.now(UTC)
    previous = registry.promote("parser-v1", "sequential test: p=0.003")
    assert previous == "parser-v0"
    assert registry.get("parser-v0").status == "retired"
    assert registry.get("parser-v1").status == "champion"
    assert registry.alias("parser", "champion") == "parser-v1"
    assert registry.alias("parser", "champion", at=before_promotion) == "parser-v0"
    assert registry.alias("parser", "challenger") is None
    history = registry.con.execute(
        "SELECT alias, version_id, reason FROM alias_history ORDER BY assigned_at"
    ).fetchall()
    assert history == [
        ("champion", "parser-v0", "initial"),
        ("challenger", "parser-v1", "gate passed: +4.1 points exact match"),
        ("champion", "parser-v1", "sequential test: p=0.003"),
        ("challenger", None, "promoted: sequential test: p=0.003"),
    ]
    current = registry.con.execute(
        "SELECT alias, version_id FROM current_aliases WHERE task = 'parser' ORDER BY alias"
    ).fetchall()
    assert current == [("challenger", None), ("champion", "parser-v1")]


def test_rollback_rejects_and_clears_the_challenger(registry: Registry) -> None:
    registry.ensure_initial_champion("retriever", base_model="all-MiniLM-L6-v2", reason="initial")
    registry.register("retriever", base_model="all-MiniLM-L6-v2", reason="trained")
    registry.make_challenger("retriever-v1", "gate passed")
    registry.reject("retriever-v1", "guardrail: latency p95 worse, p=0.0004")
    record = registry.get("retriever-v1")
    assert record.status == "rejected" and "latency" in record.status_reason
    assert registry.alias("retriever", "challenger") is None
    assert registry.alias("retriever", "champion") == "retriever-v0"


def test_a_withdrawn_challenger_is_a_candidate_again(registry: Registry) -> None:
    registry.ensure_initial_champion("parser", base_model="rules", reason="initial")
    registry.register("parser", base_model="smollm2", reason="trained")
    registry.make_challenger("parser-v1", "gate passed")
    registry.withdraw("parser-v1", "parser-v2 promoted by an operator")
    assert registry.get("parser-v1").status == "candidate"
    assert registry.alias("parser", "challenger") is None


def test_a_rollback_to_the_previous_champion_rejects_the_current_one_at_once(
    registry: Registry,
) -> None:
    registry.ensure_initial_champion("parser", base_model="rules", reason="initial")
    assert registry.previous_champion("parser") is None
    registry.register("parser", base_model="smollm2", reason="trained")
    registry.promote("parser-v1", "better")
    assert registry.previous_champion("parser") == "parser-v0"
    registry.promote("parser-v0", "regression", replaced="rejected", replaced_reason="regression")
    assert (registry.get("parser-v1").status, registry.get("parser-v1").status_reason) == (
        "rejected", "regression",
    )  # fmt: skip
    assert registry.alias("parser", "champion") == "parser-v0"
    assert registry.previous_champion("parser") is None  # a rejected version never comes back


def test_unknown_versions_and_statuses_are_clear_errors(registry: Registry) -> None:
    with pytest.raises(UnknownVersion, match="kaizend models list"):
        registry.get("parser-v9")
    registry.ensure_initial_champion("parser", base_model="rules", reason="initial")
    with pytest.raises(ValueError, match="unknown status"):
        registry.set_status("parser-v0", "deployed", "no such status")  # type: ignore[arg-type]


def test_a_gate_decision_is_stored_with_the_status_it_gives(registry: Registry) -> None:
    registry.ensure_initial_champion("parser", base_model="rules", reason="initial")
    for _ in range(3):
        registry.register("parser", base_model="smollm2-135m", reason="trained")

    def decide(version_id: str, passed: bool) -> str:
        return registry.record_gate_decision(GateRecord(
            version_id=version_id, champion="parser-v0", passed=passed,
            reason="passed: ..." if passed else "rejected: ...", checks=[], fresh_examples=40,
            decided_on="fresh", test="mcnemar_exact", p_value=0.0002,
        ))  # fmt: skip

    assert decide("parser-v1", True) == "challenger"
    assert registry.alias("parser", "challenger") == "parser-v1"
    assert decide("parser-v2", True) == "candidate"  # waits for parser-v1's experiment
    assert "waits while parser-v1 is the challenger" in registry.get("parser-v2").status_reason
    assert decide("parser-v3", False) == "rejected"
    assert registry.get("parser-v3").status_reason == "offline gate rejected: ..."
    stored = registry.con.execute(
        "SELECT version_id, passed, fresh_examples, decided_on, test, p_value "
        "FROM gate_decisions ORDER BY version_id"
    ).fetchall()
    assert stored == [
        ("parser-v1", True, 40, "fresh", "mcnemar_exact", 0.0002),
        ("parser-v2", True, 40, "fresh", "mcnemar_exact", 0.0002),
        ("parser-v3", False, 40, "fresh", "mcnemar_exact", 0.0002),
    ]


def test_a_database_made_before_the_gate_evidence_columns_gets_them(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE gate_decisions (version_id VARCHAR NOT NULL, task VARCHAR NOT NULL, "
        "champion VARCHAR NOT NULL, decided_at TIMESTAMPTZ NOT NULL, passed BOOLEAN NOT NULL, "
        "reason VARCHAR NOT NULL, checks JSON NOT NULL)"
    )
    con.execute("INSERT INTO gate_decisions VALUES ('parser-v1', 'parser', 'parser-v0', "
                "now(), true, 'passed: old', '[]')")  # fmt: skip
    con.close()
    store = EventStore(path)
    columns = [row[0] for row in store.cursor().execute("DESCRIBE gate_decisions").fetchall()]
    assert columns[-4:] == ["fresh_examples", "decided_on", "test", "p_value"]
    old = store.cursor().execute("SELECT reason, p_value FROM gate_decisions").fetchall()
    assert old == [("passed: old", None)]
