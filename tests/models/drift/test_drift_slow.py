"""The embedding checks with the real embedder (all-MiniLM-L6-v2 from its package): no drift
between days of the same traffic, drift when the traffic shifts to other places and
technologies. Slow: a few thousand query texts are embedded on the CPU."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from kaizend.core.config import Settings
from kaizend.models.drift.report import CachedEmbedder, compute, gather, text_encoder
from kaizend.models.fit.month import MonthPlan, load, simulate_month
from kaizend.storage.events import EventStore

from tests.conftest import FIT_TASKS  # noqa: E402

pytestmark = pytest.mark.slow


def test_the_real_embedder_sees_the_shift_and_only_the_shift(tmp_path: Path) -> None:
    plan = MonthPlan(end=datetime(2026, 11, 30, tzinfo=UTC))
    settings = Settings(
        daemon={"data_dir": tmp_path}, tasks=FIT_TASKS, drift={"embedder_task": "retriever"}
    )
    store = EventStore(tmp_path / "kaizend.duckdb")
    with store.cursor() as con:
        load(con, simulate_month(plan))
        embed = CachedEmbedder(text_encoder(con, settings))
        before = compute(gather(con, settings, "parser", plan.day_start(20)), settings, embed)
        during = compute(gather(con, settings, "parser", plan.end), settings, embed)

    def embedding(report: object) -> dict[str, object]:
        return {c.method: c for c in report.checks if c.field == "embedding"}

    quiet, shifted = embedding(before), embedding(during)
    assert not quiet["domain_auc"].drifted and not quiet["mmd"].drifted
    assert abs(quiet["domain_auc"].score - 0.5) < 0.08
    assert shifted["domain_auc"].drifted and shifted["mmd"].drifted
    assert shifted["domain_auc"].score > quiet["domain_auc"].score + 0.05
