"""Benchmark: kaizend's parser LoRA training against a plain transformers Trainer, same run.

Both train the same base on the same examples, prompt and target format, LoRA config
(rank, alpha, dropout, target modules, adapted blocks), batch size, learning-rate schedule,
seed and epochs:

- baseline: ``transformers.Trainer`` + peft + ``DataCollatorForSeq2Seq`` (dynamic padding,
  random batches), labels masked to the completion as usual for instruction tuning;
- kaizend: ``models.llm.train.train_llm`` (length-grouped batches, output head only on
  target positions, a lean loop).

Throughput is examples per second of the training loop (model loading excluded); the
evaluation loss of both adapters is computed by the same function on the same held-out
examples. Prints one JSON line. Run:
``.venv/bin/python bench/parser_training.py [--examples 480] [--epochs 1] [--base DIR]``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kaizend.models.fit.prompt import FitCodec  # noqa: E402
from kaizend.models.fit.querygen import generate_examples, split_examples  # noqa: E402
from kaizend.models.llm.base import ensure_base, load_base  # noqa: E402
from kaizend.models.llm.batches import (  # noqa: E402
    IGNORE_INDEX,
    batch_order,
    encode_examples,
    padding_share,
)
from kaizend.models.llm.config import PROFILES, LlmTrainingConfig  # noqa: E402
from kaizend.models.llm.train import eval_loss, seed_everything, train_llm  # noqa: E402

CODEC = FitCodec()
"""The FIT parser's default codec: the slot code with the rule hint."""

from bench.record import record  # noqa: E402


def baseline(
    base: Path, train: list[dict[str, Any]], config: LlmTrainingConfig, out: Path
) -> tuple[float, Any, Any]:
    """Train with a plain Trainer; returns (examples/s, trained peft model, tokenizer)."""
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    seed_everything(config.seed)
    model, tokenizer = load_base(base)
    count = model.config.num_hidden_layers
    layers = list(range(count - config.lora_top_layers, count)) if config.lora_top_layers else None
    model = get_peft_model(
        model,
        LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.target_modules),
            layers_to_transform=layers,
            task_type="CAUSAL_LM",
        ),
    )
    rows = []
    for item in encode_examples(tokenizer, train, CODEC):
        ids = list(item.input_ids)
        labels = [IGNORE_INDEX] * item.prompt_len + ids[item.prompt_len :]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    steps = math.ceil(math.ceil(len(rows) / config.batch_size) * config.epochs)
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=config.batch_size,
        num_train_epochs=config.epochs,
        learning_rate=config.learning_rate,
        # The same warm-up as kaizend's schedule (transformers 5 takes steps, not a ratio).
        warmup_steps=max(1, round(config.warmup_ratio * steps)),
        lr_scheduler_type="linear",
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        save_strategy="no",
        report_to=[],
        logging_strategy="no",  # stdout carries only the result line
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True),
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return len(rows) * config.epochs / seconds, model, tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=480, help="training examples")
    parser.add_argument("--eval-examples", type=int, default=200)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--base", type=Path, default=None, help="local HF base directory")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "var")
    options = parser.parse_args()

    import torch

    torch.set_num_threads(options.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = options.base or ensure_base(options.data_dir)
    splits = split_examples(generate_examples())
    train = splits["train"][: options.examples]
    held_out = splits["validation"][: options.eval_examples]
    config = PROFILES[options.profile].model_copy(
        update={"epochs": options.epochs, "threads": options.threads, "checkpoint_every": 10**6}
    )

    with tempfile.TemporaryDirectory() as scratch:
        base_rate, base_model, tokenizer = baseline(base, train, config, Path(scratch) / "hf")
        held = encode_examples(tokenizer, held_out, CODEC)
        base_loss = eval_loss(base_model, held, tokenizer.pad_token_id)
        del base_model
        version = train_llm(CODEC, 
            train, base_path=base, out_dir=Path(scratch) / "kaizend", config=config,
            resume=False,
        )  # fmt: skip
        ours_rate = version.metrics["examples_per_s_this_run"]
        from peft import PeftModel

        model, _ = load_base(base)
        ours_loss = eval_loss(
            PeftModel.from_pretrained(model, str(version.adapter_path)),
            held,
            tokenizer.pad_token_id,
        )
    encoded = encode_examples(tokenizer, train, CODEC)
    lengths = [len(item) for item in encoded]
    record(
        "parser_training",
        {
            "bench": "parser_training",
            "examples": len(train),
            "epochs": options.epochs,
            "threads": options.threads,
            "baseline_examples_per_s": round(base_rate, 3),
            "kaizend_examples_per_s": round(ours_rate, 3),
            "speedup": round(ours_rate / base_rate, 3),
            "baseline_eval_loss": round(base_loss, 5),
            "kaizend_eval_loss": round(ours_loss, 5),
            "eval_loss_rel_diff": round(abs(ours_loss - base_loss) / base_loss, 4),
            "baseline_padding_share": round(
                padding_share(
                    batch_order(lengths, config.batch_size, seed=0, group_by_length=False),
                    lengths,
                ),
                4,
            ),
            "kaizend_padding_share": round(version.metrics["padding_share_epoch0"], 4),
        },
    )


if __name__ == "__main__":
    main()
