"""The real SmolLM2 base: convert the packaged GGUF, train a few steps, parse and evaluate."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kaizend.models.fit.parser import load_fit_parser
from kaizend.models.fit.prompt import FitCodec
from kaizend.models.fit.querygen import generate_examples, split_examples
from kaizend.models.llm.base import ensure_base
from kaizend.models.llm.config import profile
from kaizend.models.llm.evaluate import evaluate
from kaizend.models.llm.train import train_llm

pytestmark = pytest.mark.slow

SPEC_TEXTS = [
    "wind sites over 100kw in berkshire",
    "what is the fit rate for fit id 1585",
    "compare wind and solar in Yorkshire",
    "show regional adjusted revenue for all wind farms",
    "find all wind farms over 500kW in Yorkshire that are good for repowering",
]


def test_real_base_trains_a_few_steps_and_serves(tmp_path: Path) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    base = ensure_base(tmp_path / "data")
    assert (base / "model.safetensors").is_file()
    assert ensure_base(tmp_path / "data") == base  # converted once, then reused
    splits = split_examples(generate_examples())
    config = profile("quick").model_copy(update={"max_steps": 4, "threads": 2})
    version = train_llm(FitCodec(), 
        splits["train"][:64], base_path=base, out_dir=tmp_path / "v", config=config,
        validation=splits["validation"][:16],
    )  # fmt: skip
    losses = version.metrics["train_losses"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    parser = load_fit_parser(version.path, threads=2)
    for text in SPEC_TEXTS:
        result = parser.answer(text)
        assert result.latency_ms > 0 and result.output is not None
    report = evaluate(parser, splits["test"][:5])
    assert report["n"] == 5
