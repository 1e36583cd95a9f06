"""The embedding function kaizend hands to ChromaDB: a sentence-transformers model.

It implements Chroma's EmbeddingFunction interface by duck typing (importing chromadb here
would make every import of the retriever pay for it). Chroma gets it with every collection,
so it never falls back to its default model, which it would download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kaizend.models.retriever.base import load_model

NAME = "kaizend-sentence-transformer"


class SentenceEmbedder:
    """Normalised sentence-transformers embeddings of documents and queries."""

    def __init__(
        self,
        model_path: Path | str,
        *,
        batch_size: int = 64,
        model: Any = None,
        device: str | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.batch_size = batch_size
        self.device = device
        self._model = model

    @property
    def key(self) -> str:
        """The weights' directory: what identifies the embeddings (a drift `TextEncoder`)."""
        return str(self.model_path)

    @property
    def model(self) -> Any:
        """The SentenceTransformer, loaded on first use.

        Lazily, because Chroma rebuilds an embedding function from its stored config
        (`build_from_config`) on every add and query, without ever calling it.
        """
        if self._model is None:
            self._model = load_model(self.model_path, device=self.device)
        return self._model

    def __call__(self, input: Any) -> list[Any]:  # noqa: A002 - Chroma calls it `input`
        """Embeddings of ``input`` (a list of texts), unit length, as float32 arrays."""
        return list(self.encode(list(input)))

    def encode(self, texts: list[str]) -> Any:
        """The embeddings of ``texts`` as one (n, dim) float32 array."""
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def embed_query(self, input: Any) -> list[Any]:  # noqa: A002
        """Query embeddings (the same model: queries and documents share one space)."""
        return self(input)

    @staticmethod
    def name() -> str:
        """The name Chroma records with the collection."""
        return NAME

    def get_config(self) -> dict[str, Any]:
        """What Chroma stores to describe this function."""
        return {"model_path": str(self.model_path), "batch_size": self.batch_size}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> SentenceEmbedder:
        """Rebuild from `get_config` output."""
        return SentenceEmbedder(config["model_path"], batch_size=config.get("batch_size", 64))

    def default_space(self) -> str:
        """Cosine: the model is trained for cosine similarity."""
        return "cosine"

    def supported_spaces(self) -> list[str]:
        """Only cosine makes sense for normalised sentence embeddings."""
        return ["cosine"]

    def is_legacy(self) -> bool:
        """Chroma asks; this function implements the current interface."""
        return False

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        """Chroma's hook; any stored config is acceptable."""

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        """Chroma's hook; a new model path is allowed (the fingerprint guards the content)."""
