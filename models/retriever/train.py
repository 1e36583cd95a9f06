"""Fine-tuning the embedder on feedback pairs with sentence-transformers' trainer.

``SentenceTransformerTrainer`` with MultipleNegativesRankingLoss by default (each pair's
positive against every other document in the batch and the pair's hard negatives), or
CosineSimilarityLoss on labelled (query, document, 1/0) rows, or TripletLoss on (query,
positive, negative). Pairs of the same query never share a batch under mnrl (its in-batch
negatives would be false ones). The validation pairs are evaluated every ``eval_steps``;
early stopping keeps the best checkpoint. fp16/bf16 only on CUDA; everything seeded.

The trainer checkpoints into ``<out_dir>/checkpoints`` at every evaluation; calling
`train_retriever` again with the same ``out_dir`` resumes from the newest complete one (marked
once all its files are on disk; a checkpoint torn by a kill is passed over).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kaizend.models.retriever.base import fingerprint, load_model
from kaizend.models.retriever.config import RetrieverTrainingSettings
from kaizend.models.retriever.version import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    MODEL_DIR,
    RetrieverVersion,
    manifest,
)
from kaizend.models.task import ProgressCallback, TrainProgress
from kaizend.models.version import commit_file, write_json

log = logging.getLogger(__name__)

COMPLETE_MARK = "kaizend-complete"
"""Written into a trainer checkpoint once all of it is on disk (`last_complete_checkpoint`)."""


def rows_for_loss(pairs: Sequence[Mapping[str, Any]], loss: str) -> dict[str, list[Any]]:
    """The dataset columns ``loss`` takes, from ``{anchor, positive, negatives}`` pairs."""
    if loss == "mnrl":
        width = min((len(pair["negatives"]) for pair in pairs), default=0)
        columns: dict[str, list[Any]] = {"anchor": [], "positive": []}
        columns |= {f"negative_{n + 1}": [] for n in range(width)}
        for pair in pairs:
            columns["anchor"].append(pair["anchor"])
            columns["positive"].append(pair["positive"])
            for n in range(width):
                columns[f"negative_{n + 1}"].append(pair["negatives"][n])
        return columns
    if loss == "triplet":
        columns = {"anchor": [], "positive": [], "negative": []}
        for pair in pairs:
            for negative in pair["negatives"]:
                columns["anchor"].append(pair["anchor"])
                columns["positive"].append(pair["positive"])
                columns["negative"].append(negative)
        if not columns["anchor"]:
            raise ValueError("TripletLoss needs negatives: set retriever.pairs.hard_negatives")
        return columns
    if loss == "cosine":
        columns = {"sentence1": [], "sentence2": [], "score": []}
        for pair in pairs:
            for text, label in [(pair["positive"], 1.0)] + [(n, 0.0) for n in pair["negatives"]]:
                columns["sentence1"].append(pair["anchor"])
                columns["sentence2"].append(text)
                columns["score"].append(label)
        return columns
    raise ValueError(f"unknown loss {loss!r}: use mnrl, cosine or triplet")


def _st(module: str) -> Any:
    """A sentence-transformers submodule where 6.x keeps it, or where 5.x did."""
    import importlib

    try:
        return importlib.import_module(f"sentence_transformers.sentence_transformer.{module}")
    except ImportError:
        return importlib.import_module(f"sentence_transformers.{module}")


def _loss(model: Any, name: str) -> Any:
    losses = _st("losses")
    if name == "mnrl":
        return losses.MultipleNegativesRankingLoss(model)
    if name == "cosine":
        return losses.CosineSimilarityLoss(model)
    return losses.TripletLoss(model, distance_metric=losses.TripletDistanceMetric.COSINE)


def _mark_complete_callback() -> Any:
    from transformers import TrainerCallback

    class _MarkComplete(TrainerCallback):
        """After the trainer wrote a checkpoint: its files on disk, then the mark."""

        def on_save(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if not folder.is_dir():
                return
            for file in folder.rglob("*"):
                if file.is_file() and file.name != COMPLETE_MARK:
                    with open(file, "rb") as handle:
                        os.fsync(handle.fileno())
            partial = folder / (COMPLETE_MARK + ".partial")
            partial.write_text(f"{state.global_step}\n")
            commit_file(partial, folder / COMPLETE_MARK)

    return _MarkComplete()


def last_complete_checkpoint(checkpoints: Path) -> Path | None:
    """The newest ``checkpoint-<step>`` that was written to the end.

    transformers writes a checkpoint's files one after another into its final directory and
    resumes from the highest step it finds, so a kill in the middle of a save would leave a
    torn checkpoint that every retry fails on; only one with kaizend's mark counts.
    """
    if not checkpoints.is_dir():
        return None
    complete = [
        (int(folder.name.rpartition("-")[2]), folder)
        for folder in checkpoints.glob("checkpoint-*")
        if folder.name.rpartition("-")[2].isdigit() and (folder / COMPLETE_MARK).is_file()
    ]
    return max(complete)[1] if complete else None


def _progress_callback(progress: ProgressCallback | None, batch_size: int) -> Any:
    from transformers import TrainerCallback

    class _Report(TrainerCallback):
        """Every logging step: a log line and a `TrainProgress` to the caller."""

        def __init__(self) -> None:
            self.started = time.perf_counter()
            self.first_step: int | None = None

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            logs = logs or {}
            if "loss" not in logs:
                if "eval_loss" in logs:
                    log.info(
                        "retriever training step %d/%d eval loss %.4f",
                        state.global_step,
                        state.max_steps,
                        logs["eval_loss"],
                    )
                return
            if self.first_step is None:
                self.first_step = max(0, state.global_step - args.logging_steps)
            elapsed = time.perf_counter() - self.started
            done = state.global_step - self.first_step
            rate = done * batch_size / elapsed if elapsed > 0 else 0.0
            eta = (state.max_steps - state.global_step) * elapsed / max(1, done)
            report = TrainProgress(
                step=state.global_step,
                total_steps=state.max_steps,
                epoch=float(state.epoch or 0.0),
                loss=float(logs["loss"]),
                learning_rate=float(logs.get("learning_rate", 0.0)),
                examples_per_s=rate,
                eta_s=eta,
            )
            log.info(
                "retriever training step %d/%d loss %.4f lr %.2e %.1f pairs/s eta %.0f s",
                report.step,
                report.total_steps,
                report.loss,
                report.learning_rate,
                rate,
                eta,
            )
            if progress is not None:
                progress(report)

    return _Report()


def _total_steps(rows: int, settings: RetrieverTrainingSettings) -> int:
    """Optimiser steps the run will take (for the warm-up, given as a share)."""
    if settings.max_steps:
        return settings.max_steps
    return math.ceil(math.ceil(rows / settings.batch_size) * settings.epochs)


def train_retriever(
    train_pairs: Sequence[Mapping[str, Any]],
    *,
    base_path: Path,
    out_dir: Path,
    settings: RetrieverTrainingSettings,
    validation_pairs: Sequence[Mapping[str, Any]] = (),
    progress: ProgressCallback | None = None,
    progress_bar: bool = False,
) -> RetrieverVersion:
    """Fine-tune the model at ``base_path`` on ``train_pairs`` into version dir ``out_dir``.

    Resumes from the newest checkpoint in ``out_dir/checkpoints`` when there is one.
    Returns the complete version (``metrics.json`` written last).
    """
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from transformers import EarlyStoppingCallback

    if not train_pairs:
        raise ValueError("no training pairs: collect rated retrieval results before training")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = out_dir / CHECKPOINT_DIR
    # A version is complete only once this run writes its metrics again.
    (out_dir / METRICS_FILE).unlink(missing_ok=True)
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    cuda = torch.cuda.is_available()
    model = load_model(Path(base_path), device="cuda" if cuda else "cpu")
    model.max_seq_length = settings.max_seq_length
    train_dataset = Dataset.from_dict(rows_for_loss(train_pairs, settings.loss))
    eval_dataset = (
        Dataset.from_dict(rows_for_loss(validation_pairs, settings.loss))
        if validation_pairs
        else None
    )
    validating = eval_dataset is not None and len(eval_dataset) > 0
    bf16 = cuda and torch.cuda.is_bf16_supported()
    samplers = _st("training_args").BatchSamplers
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        warmup_steps=math.ceil(_total_steps(len(train_dataset), settings) * settings.warmup_ratio),
        fp16=cuda and not bf16,
        bf16=bf16,
        batch_sampler=(
            samplers.NO_DUPLICATES if settings.loss == "mnrl" else samplers.BATCH_SAMPLER
        ),
        eval_strategy="steps" if validating else "no",
        eval_steps=settings.eval_steps if validating else None,
        save_strategy="steps",
        save_steps=settings.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=validating,
        metric_for_best_model="eval_loss" if validating else None,
        greater_is_better=False if validating else None,
        logging_steps=max(1, min(10, settings.eval_steps)),
        seed=settings.seed,
        data_seed=settings.seed,
        report_to="none",
        disable_tqdm=not progress_bar,
        dataloader_pin_memory=cuda,
    )
    callbacks = [_progress_callback(progress, settings.batch_size), _mark_complete_callback()]
    if validating:
        callbacks.append(EarlyStoppingCallback(settings.early_stopping_patience))
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset if validating else None,
        loss=_loss(model, settings.loss),
        callbacks=callbacks,
    )
    found = last_complete_checkpoint(checkpoints)
    resume = str(found) if found is not None else None
    log.info(
        "retriever training started: %d pairs (%d validation), loss %s, %s, out %s%s",
        len(train_pairs),
        len(validation_pairs),
        settings.loss,
        "cuda" if cuda else "cpu",
        out_dir,
        f", resuming {Path(resume).name}" if resume else "",
    )
    result = trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.perf_counter() - started
    eval_loss = trainer.evaluate()["eval_loss"] if validating else None

    shutil.rmtree(out_dir / MODEL_DIR, ignore_errors=True)
    model.save(str(out_dir / MODEL_DIR))
    write_json(
        out_dir / CONFIG_FILE,
        {
            "kind": "embedder",
            "base_model": str(Path(base_path).resolve()),
            "base_fingerprint": fingerprint(Path(base_path)),
            "training": settings.model_dump(),
        },
    )
    write_json(out_dir / MANIFEST_FILE, manifest(train_pairs))
    history = trainer.state.log_history
    losses = [entry["loss"] for entry in history if "loss" in entry]
    metrics = {
        "steps": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "early_stopped": trainer.state.global_step < trainer.state.max_steps,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "train_pairs": len(train_pairs),
        "validation_pairs": len(validation_pairs),
        "train_loss": result.training_loss,
        "train_loss_final": losses[-1] if losses else None,
        "eval_loss": eval_loss,
        "eval_losses": [entry["eval_loss"] for entry in history if "eval_loss" in entry],
        "device": "cuda" if cuda else "cpu",
        "train_seconds_this_run": round(train_seconds, 1),
    }
    write_json(out_dir / METRICS_FILE, metrics)
    shutil.rmtree(checkpoints, ignore_errors=True)
    log.info(
        "retriever training finished: %s, %d steps, eval loss %s, in %.1f s",
        out_dir,
        trainer.state.global_step,
        f"{eval_loss:.4f}" if eval_loss is not None else "n/a",
        time.perf_counter() - started,
    )
    return RetrieverVersion.load(out_dir)
