"""Retraining triggers: threshold, cooldown, maximum age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kaizend.core.config import TriggerSettings
from kaizend.models.triggers import TriggerState, training_reason

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
CONFIG = TriggerSettings(min_new_signal=100, cooldown_s=3600, max_age_s=7 * 86400)


def reason(new: int, requested_h: float | None, trained_days: float) -> str | None:
    state = TriggerState(
        new_signal=new,
        last_requested=None if requested_h is None else NOW - timedelta(hours=requested_h),
        last_trained=NOW - timedelta(days=trained_days),
    )
    return training_reason(CONFIG, state, NOW)


def test_the_threshold_fires_and_says_why() -> None:
    assert reason(99, None, 1) is None
    assert reason(100, None, 1) == "threshold: 100 new signals >= 100"


def test_the_cooldown_holds_even_past_the_threshold() -> None:
    assert reason(500, 0.5, 1) is None
    assert reason(500, 1.0, 1) is not None


def test_max_age_retrains_with_any_new_signal_but_not_without() -> None:
    assert reason(3, 30, 8) == "max age: last trained 8.0 days ago (limit 7.0 days), 3 new signals"
    assert reason(0, 30, 80) is None
    assert reason(3, 30, 6) is None
    no_age = TriggerSettings(min_new_signal=100, max_age_s=0)
    state = TriggerState(new_signal=3, last_requested=None, last_trained=NOW - timedelta(days=99))
    assert training_reason(no_age, state, NOW) is None
