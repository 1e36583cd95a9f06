"""Searching a retriever version: the predictor `RetrieverTask.load` returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kaizend.models.task import Prediction
from kaizend.storage.vectors import VectorIndex


@dataclass(frozen=True)
class SearchResult:
    """One result: the site's id, the cosine similarity, and the stored document."""

    doc_id: str
    score: float
    text: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


class Retriever:
    """Embeds queries with a version's model and searches that version's collection."""

    def __init__(self, index: VectorIndex, version: str, top_k: int = 10) -> None:
        self.index = index
        self.version = version
        self.top_k = top_k

    def search_many(
        self, texts: Sequence[str], k: int | None = None
    ) -> list[list[tuple[str, float]]]:
        """For each text, the ``k`` best (doc_id, score), best first."""
        return self.index.query(list(texts), k or self.top_k)

    def __call__(self, texts: Sequence[str]) -> list[list[tuple[str, float]]]:
        """`search_many` with the default ``k``: the simulator's and miner's search function."""
        return self.search_many(texts)

    def search(self, text: str, k: int | None = None) -> list[SearchResult]:
        """The ``k`` best results for one query, with their documents."""
        ranked = self.search_many([text], k)[0]
        stored = self.index.documents([doc_id for doc_id, _ in ranked])
        return [
            SearchResult(doc_id, score, *stored.get(doc_id, ("", {}))) for doc_id, score in ranked
        ]

    def output(self, text: str, k: int | None = None) -> dict[str, Any]:
        """A query event's ``output``: ``{"results": [{"doc_id", "score"}, ...]}``."""
        return _output(self.search_many([text], k)[0])

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """`models.task.Predictor`: one embedding pass and one index query for the batch."""
        return [Prediction(_output(ranked)) for ranked in self.search_many(texts)]


def _output(ranked: Sequence[tuple[str, float]]) -> dict[str, Any]:
    return {"results": [{"doc_id": doc_id, "score": round(score, 4)} for doc_id, score in ranked]}
