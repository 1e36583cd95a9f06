"""`make demo` as a test: the closed loop on the embedded defaults, asserted.

Slow (about 20 minutes on 2 CPU cores): the daemon, the reference service, simulated users,
a real training of the SmolLM2 adapter, the offline gate, two experiments.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from examples.demo import Demo, DemoOptions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(40 * 60)]


def test_a_retrained_parser_is_promoted_and_a_worse_challenger_rolled_back(
    tmp_path: Path,
) -> None:
    result = asyncio.run(Demo(DemoOptions(data_dir=tmp_path / "demo", show=False)).run())
    version = result.promoted
    assert version is not None and version != "parser-v0"
    assert result.gate["passed"] is True
    promotion = result.promotion
    assert (promotion["action"], promotion["gate"], promotion["weight"]) == (
        "promote", "primary", 0.5,
    )  # fmt: skip
    assert promotion["p_value"] < 0.05 and promotion["ci_lower"] > 0
    ramp = [d["weight"] for d in result.decisions if d["challenger"] == version]
    assert ramp == [0.10, 0.25, 0.50]  # advance, advance, promote
    # Better on live traffic and on held-out questions the loop never trained on.
    assert result.success(version) > result.success("parser-v0")
    heldout = result.heldout
    assert heldout[version]["success"] > heldout["parser-v0"]["success"]
    assert heldout[version]["exact_match"] > heldout["parser-v0"]["exact_match"]
    # The deliberately worse challenger (the rules again) is rolled back.
    assert result.rolled_back == "parser-v0"
    assert result.rollback["action"] == "rollback" and result.rollback["p_value"] < 0.05
    assert result.ok and result.elapsed_s < 25 * 60
