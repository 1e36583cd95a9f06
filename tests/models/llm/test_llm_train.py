from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kaizend.models.fit.prompt import FitCodec
from kaizend.models.llm.base import load_base
from kaizend.models.llm.batches import collate, encode_examples
from kaizend.models.llm.config import LlmTrainingConfig
from kaizend.models.llm.train import completion_loss, train_llm
from kaizend.models.llm.version import CHECKPOINT_DIR, IncompleteVersion, LlmVersion
from kaizend.models.task import TrainProgress

TINY = LlmTrainingConfig(
    lora_rank=4,
    lora_alpha=8.0,
    batch_size=8,
    max_steps=6,
    learning_rate=5e-3,
    checkpoint_every=2,
    eval_batch_size=16,
)


class Crash(RuntimeError):
    pass


def _adapter_tensors(version: LlmVersion) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(version.adapter_path / "adapter_model.safetensors")


def test_completion_loss_matches_transformers_loss_on_target_tokens(
    tiny_base: Path, small_splits: dict
) -> None:
    import torch

    model, tokenizer = load_base(tiny_base)
    batch = collate(
        encode_examples(tokenizer, small_splits["train"][:6], FitCodec()), tokenizer.pad_token_id
    )
    with torch.no_grad():
        ours = completion_loss(model, batch)
        reference = model(**batch).loss
    assert torch.allclose(ours, reference, atol=1e-5)


def test_training_writes_a_complete_version(tiny_base: Path, small_splits: dict, tmp_path: Path):
    seen: list[TrainProgress] = []
    version = train_llm(
        FitCodec(),
        small_splits["train"],
        base_path=tiny_base,
        out_dir=tmp_path / "v1",
        config=TINY,
        validation=small_splits["validation"],
        progress=seen.append,
    )
    assert [report.step for report in seen] == list(range(1, 7))
    assert all(report.eta_s >= 0 and report.examples_per_s > 0 for report in seen)
    assert (version.adapter_path / "adapter_model.safetensors").is_file()
    assert version.base_path == tiny_base.resolve()
    assert version.config == TINY
    manifest = json.loads((version.path / "manifest.json").read_text())
    assert manifest["count"] == len(small_splits["train"])
    assert manifest["ids"] == sorted(example["id"] for example in small_splits["train"])
    assert len(manifest["sha256"]) == 64
    assert version.metrics["steps"] == 6
    assert version.metrics["eval_loss"] > 0
    assert len(version.metrics["train_losses"]) == 6
    assert not (version.path / CHECKPOINT_DIR).exists()


def test_training_lowers_the_loss(tiny_base: Path, small_splits: dict, tmp_path: Path) -> None:
    config = TINY.model_copy(
        update={"max_steps": 30, "learning_rate": 1e-2, "checkpoint_every": 50}
    )
    version = train_llm(
        FitCodec(),
        small_splits["train"][:16],
        base_path=tiny_base,
        out_dir=tmp_path / "v",
        config=config,
    )
    losses = version.metrics["train_losses"]
    assert sum(losses[-5:]) < 0.95 * sum(losses[:5])


def test_a_crashed_run_resumes_to_the_same_adapter(
    tiny_base: Path, small_splits: dict, tmp_path: Path
) -> None:
    import torch

    examples = small_splits["train"]
    straight = train_llm(
        FitCodec(), examples, base_path=tiny_base, out_dir=tmp_path / "a", config=TINY
    )

    def crash_at_five(report: TrainProgress) -> None:
        if report.step == 5:
            raise Crash

    with pytest.raises(Crash):
        train_llm(FitCodec(), 
            examples, base_path=tiny_base, out_dir=tmp_path / "b", config=TINY,
            progress=crash_at_five,
        )  # fmt: skip
    assert (tmp_path / "b" / CHECKPOINT_DIR).is_dir()
    with pytest.raises(IncompleteVersion):
        LlmVersion.load(tmp_path / "b")
    steps: list[int] = []
    resumed = train_llm(FitCodec(), 
        examples, base_path=tiny_base, out_dir=tmp_path / "b", config=TINY,
        progress=lambda report: steps.append(report.step),
    )  # fmt: skip
    assert steps == [5, 6]  # restarted from the step-4 checkpoint
    expected, got = _adapter_tensors(straight), _adapter_tensors(resumed)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.allclose(expected[name], got[name], atol=1e-6), name
