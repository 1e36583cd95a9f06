"""The real base embedder (packaged all-MiniLM-L6-v2) fine-tuned for a few steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kaizend.models.retriever.base import load_model, packaged_base
from kaizend.models.retriever.config import RetrieverSettings
from kaizend.models.retriever.version import RetrieverVersion

from tests.models.retriever.test_retriever_task import make_task, store_feedback

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _margin(model_dir: Path, pairs: list[dict]) -> float:
    """Mean cos(query, positive) - cos(query, negative) over training pairs."""
    model = load_model(model_dir, device="cpu")
    encode = lambda texts: model.encode(texts, normalize_embeddings=True)  # noqa: E731
    anchors = encode([p["anchor"] for p in pairs])
    positives = encode([p["positive"] for p in pairs])
    negatives = encode([p["negatives"][0] for p in pairs])
    return float(np.mean((anchors * positives).sum(1) - (anchors * negatives).sum(1)))


def test_a_few_steps_on_the_real_base_move_positives_closer(tmp_path: Path) -> None:
    settings = RetrieverSettings(
        pairs={"min_positive": 5, "min_negative": 5},
        training={"batch_size": 16, "max_steps": 6, "eval_steps": 3, "learning_rate": 1e-4},
    )
    task = make_task(tmp_path, settings)
    training = task.build_training_set(store_feedback(task, tmp_path / "k.duckdb").cursor())
    out = task.train(training, tmp_path / "retriever-slow")

    version = RetrieverVersion.load(out)
    assert version.metrics["steps"] == 6
    assert version.config["base_model"] == str(packaged_base().resolve())
    sample = list(training.train)[:64]
    assert _margin(version.model_path, sample) > _margin(packaged_base(), sample)
    report = task.evaluate(out, task.benchmark_examples())
    assert report["examples"] == 30 and 0.0 < report["ndcg@10"] <= 1.0
