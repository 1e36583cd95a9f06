"""LoRA fine-tuning of an LLM task: a lean loop with completion-only loss, resumable.

On CPU the adapters train in fp32 on the fp32 base; on CUDA (when `quantize_4bit`) the base
loads in 4-bit nf4 with bf16 compute and the optimiser is bitsandbytes' paged 8-bit AdamW
(QLoRA). Where the time goes and what the loop does about it:

- loss only on the target tokens, and the output head (a 49k-row matrix for SmolLM2) is
  applied only at those positions instead of at every position of the batch;
- length-grouped batches padded to their own longest example;
- optionally only the top blocks are adapted, so the backward pass stops early.

Every `checkpoint_every` steps the adapter, optimiser, scheduler and random states go to
``<out_dir>/checkpoint``; calling `train_llm` again with the same `out_dir` resumes there
and produces the same adapter as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kaizend.models.llm import base as base_model
from kaizend.models.llm.batches import (
    IGNORE_INDEX,
    Encoded,
    batch_order,
    collate,
    encode_examples,
)
from kaizend.models.llm.batches import padding_share as batches_padding_share
from kaizend.models.llm.codec import Codec
from kaizend.models.llm.config import LlmTrainingConfig
from kaizend.models.llm.version import (
    ADAPTER_DIR,
    BASE_FILE,
    CHECKPOINT_DIR,
    CODEC_FILE,
    CONFIG_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    LlmVersion,
    manifest,
)
from kaizend.models.task import ProgressCallback, TrainProgress
from kaizend.models.version import commit_file, write_json

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "state.pt"


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's generators (adapter init, dropout, batch order)."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def completion_loss(model: Any, batch: Mapping[str, Any], *, reduction: str = "mean") -> Any:
    """Cross-entropy over the target tokens only, projecting only those positions.

    Runs the decoder stack, then the output head on the (few) positions whose next token
    is a target token; computing logits for the prompt and padding too would spend a large
    share of the step on the vocabulary projection for nothing.
    """
    import torch

    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = causal_lm.get_decoder()
    head = causal_lm.get_output_embeddings()
    hidden = decoder(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE_INDEX
    logits = head(hidden[:, :-1][mask])
    return torch.nn.functional.cross_entropy(logits.float(), targets[mask], reduction=reduction)


def eval_loss(model: Any, encoded: Sequence[Encoded], pad_id: int, batch_size: int = 32) -> float:
    """Mean completion loss per target token over `encoded` (no dropout, no gradients)."""
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda index: len(encoded[index]))
    total = 0.0
    tokens = 0
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = collate([encoded[i] for i in order[start : start + batch_size]], pad_id)
            batch = {name: tensor.to(device) for name, tensor in batch.items()}
            total += float(completion_loss(model, batch, reduction="sum"))
            tokens += int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    model.train(was_training)
    return total / tokens if tokens else float("nan")


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_for_training(base_path: Path, config: LlmTrainingConfig, device: str) -> Any:
    """The base model with LoRA adapters attached, ready to train on `device`."""
    import torch
    from peft import LoraConfig, get_peft_model

    if device == "cuda" and config.quantize_4bit:
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
        model = AutoModelForCausalLM.from_pretrained(
            str(base_path),
            local_files_only=True,
            quantization_config=quantization,
            dtype=torch.bfloat16,
            device_map={"": 0},
        )
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    else:
        model, _ = base_model.load_base(base_path, device=device)
    layers = None
    if config.lora_top_layers is not None:
        count = model.config.num_hidden_layers
        layers = list(range(max(0, count - config.lora_top_layers), count))
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        layers_to_transform=layers,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    # The KV cache is useless when training and costs memory on every forward pass.
    model.config.use_cache = False
    return model


def _optimizer(model: Any, config: LlmTrainingConfig, device: str) -> Any:
    import torch

    params = [param for param in model.parameters() if param.requires_grad]
    if device == "cuda" and config.quantize_4bit:
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW8bit(
            params, lr=config.learning_rate, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)


def _schedule(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    warmup = max(1, round(total_steps * warmup_ratio)) if warmup_ratio > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def _trainable_state(model: Any) -> dict[str, Any]:
    return {
        name: param.detach().clone()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def _save_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, state: dict) -> None:
    """Write the resumable state atomically: ``state.pt`` is written beside itself, then
    swapped in with one rename (`commit_file`), so a kill at any moment leaves the previous
    checkpoint or this one, never neither."""
    import torch

    path.mkdir(parents=True, exist_ok=True)
    partial = path / (CHECKPOINT_FILE + ".partial")
    torch.save(
        {
            "adapter": _trainable_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "python_rng": random.getstate(),
            "torch_rng": torch.get_rng_state(),
            **state,
        },
        partial,
    )
    commit_file(partial, path / CHECKPOINT_FILE)


def _load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> dict | None:
    import torch

    state_file = path / CHECKPOINT_FILE
    if not state_file.is_file():
        return None
    # Tensors, numbers and containers only: a checkpoint cannot run code when it loads.
    state = torch.load(state_file, weights_only=True)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["adapter"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    random.setstate(state["python_rng"])
    torch.set_rng_state(state["torch_rng"])
    return state


def train_llm(
    codec: Codec,
    train_examples: Sequence[Mapping[str, Any]],
    *,
    base_path: Path,
    out_dir: Path,
    config: LlmTrainingConfig,
    validation: Sequence[Mapping[str, Any]] = (),
    progress: ProgressCallback | None = None,
    progress_bar: bool = False,
    resume: bool = True,
) -> LlmVersion:
    """Train a LoRA adapter on `{id, text, expected}` examples into version dir `out_dir`,
    prompts and targets written by `codec`.

    `base_path` is a local Hugging Face directory (see `models.llm.base.ensure_base`).
    `progress` receives every step (step, loss, throughput, ETA); `progress_bar` shows a
    tqdm bar as well. With `resume`, an existing checkpoint in `out_dir` is continued;
    otherwise it is discarded. Returns the complete version.
    """
    import torch

    if not train_examples:
        raise ValueError("no training examples: generate or collect some before training")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = out_dir / CHECKPOINT_DIR
    if not resume:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = _device()
    seed_everything(config.seed)

    model = _load_for_training(Path(base_path), config, device)
    tokenizer = base_model.load_base_tokenizer(Path(base_path))
    pad_id = tokenizer.pad_token_id
    encoded = encode_examples(tokenizer, train_examples, codec)
    encoded_eval = encode_examples(tokenizer, validation, codec)
    lengths = [len(item) for item in encoded]

    steps_per_epoch = math.ceil(len(encoded) / config.batch_size)
    total_steps = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
    optimizer = _optimizer(model, config, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(total_steps, config.warmup_ratio)
    )
    state = _load_checkpoint(checkpoint_dir, model, optimizer, scheduler) if resume else None
    step = state["step"] if state else 0
    losses: list[float] = list(state["losses"]) if state else []
    examples_seen = 0
    if state:
        log.info("LLM training resumed at step %d/%d from %s", step, total_steps, out_dir)
    log.info(
        "LLM training started: %d examples, %d steps, device %s, out %s",
        len(encoded),
        total_steps,
        device,
        out_dir,
    )

    epochs_order: dict[int, list[list[int]]] = {}
    bar = None
    if progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=step, desc="LoRA", unit="step")
    model.train()
    loop_started = time.perf_counter()
    while step < total_steps:
        epoch, index = divmod(step, steps_per_epoch)
        if epoch not in epochs_order:
            epochs_order = {
                epoch: batch_order(
                    lengths,
                    config.batch_size,
                    seed=config.seed * 1000 + epoch,
                    group_by_length=config.group_by_length,
                    group_size=config.length_group_size,
                )
            }
        members = epochs_order[epoch][index]
        batch = collate([encoded[i] for i in members], pad_id)
        batch = {name: tensor.to(device) for name, tensor in batch.items()}
        loss = completion_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(
            [param for param in model.parameters() if param.requires_grad], config.max_grad_norm
        )
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        examples_seen += len(members)
        losses.append(float(loss.detach()))
        elapsed = time.perf_counter() - loop_started
        rate = examples_seen / elapsed if elapsed > 0 else 0.0
        eta = (total_steps - step) * (elapsed / max(1, examples_seen)) * config.batch_size
        report = TrainProgress(
            step=step,
            total_steps=total_steps,
            epoch=step / steps_per_epoch,
            loss=losses[-1],
            learning_rate=scheduler.get_last_lr()[0],
            examples_per_s=rate,
            eta_s=eta,
        )
        log.info(
            "LLM training step %d/%d loss %.4f lr %.2e %.1f ex/s eta %.0f s",
            step,
            total_steps,
            report.loss,
            report.learning_rate,
            rate,
            eta,
        )
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{report.loss:.3f}")
        if step % config.checkpoint_every == 0 and step < total_steps:
            _save_checkpoint(
                checkpoint_dir, model, optimizer, scheduler, {"step": step, "losses": losses}
            )
        if progress is not None:
            progress(report)
    if bar is not None:
        bar.close()
    train_seconds = time.perf_counter() - loop_started

    validation_loss = (
        eval_loss(model, encoded_eval, pad_id, config.eval_batch_size) if encoded_eval else None
    )
    model.save_pretrained(out_dir / ADAPTER_DIR, safe_serialization=True)
    write_json(
        out_dir / BASE_FILE,
        {"path": str(Path(base_path).resolve()), "fingerprint": base_model.fingerprint(base_path)},
    )
    write_json(out_dir / CONFIG_FILE, json.loads(config.model_dump_json()))
    write_json(out_dir / CODEC_FILE, codec.describe())
    write_json(out_dir / MANIFEST_FILE, manifest(train_examples))
    tail = losses[-10:]
    metrics = {
        "steps": step,
        "resumed_from_step": state["step"] if state else 0,
        "examples": len(encoded),
        "device": device,
        "train_loss_final": sum(tail) / len(tail) if tail else None,
        "train_losses": losses,
        "eval_loss": validation_loss,
        "eval_examples": len(encoded_eval),
        "train_seconds_this_run": train_seconds,
        "examples_per_s_this_run": examples_seen / train_seconds if train_seconds else None,
        "padding_share_epoch0": batches_padding_share(
            batch_order(
                lengths,
                config.batch_size,
                seed=config.seed * 1000,
                group_by_length=config.group_by_length,
                group_size=config.length_group_size,
            ),
            lengths,
        ),
    }
    write_json(out_dir / METRICS_FILE, metrics)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    log.info(
        "LLM training finished: %s, %d steps, eval loss %s, in %.1f s",
        out_dir,
        step,
        f"{validation_loss:.4f}" if validation_loss is not None else "n/a",
        time.perf_counter() - started,
    )
    return LlmVersion.load(out_dir)
