"""The ``embedder`` kind's task: a sentence-transformers retriever over a team's corpus.

Training data are pairs built from the feedback stored for retriever queries
(`models.retriever.pairs`); validation pairs come from a share of the rated queries that
training never sees. The fresh set is the newest rated queries, held back as evaluation
examples ``{text, relevant_ids, source}``: corrected ones (``correction``, the correction's
relevant ids) and answers users confirmed (``confirmed``, `models.task.confirmed_answers`:
the results they rated well are the relevant ids), together, as they arrived. Evaluation
searches the version's own ChromaDB collection, built (or resumed) on first use; ``load``
returns a `Retriever` over it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import duckdb
from kaizend.models.retriever.base import BUILTIN_VERSION, base_path
from kaizend.models.retriever.config import RetrieverSettings
from kaizend.models.retriever.corpus import Document, load_corpus
from kaizend.models.retriever.embedding import SentenceEmbedder
from kaizend.models.retriever.evaluate import GREATER_IS_BETTER, PRIMARY_METRIC, evaluate
from kaizend.models.retriever.index import ensure_index
from kaizend.models.retriever.pairs import build_pairs, collect_judgements, count_signal
from kaizend.models.retriever.search import Retriever
from kaizend.models.retriever.train import train_retriever
from kaizend.models.retriever.version import model_dir, version_label
from kaizend.models.task import (
    CONFIRMED,
    CORRECTION,
    NotEnoughSignal,
    OptionalHooks,
    ProgressCallback,
    TrainingSet,
    confirmed_answers,
    hold_back_newest,
)
from kaizend.storage.vectors import IndexNotReady, VectorStore

log = logging.getLogger(__name__)


# New signal: rated results (feedback naming a document) and corrections of retriever
# queries, by the time they were stored.
_NEW_SIGNAL = """
SELECT (SELECT count(*) FROM feedback_events f JOIN query_events q USING (query_id)
        WHERE q.task = $task AND f.doc_id IS NOT NULL
          AND f.ingested_at > $since AND f.ingested_at <= $until)
     + (SELECT count(*) FROM correction_events c JOIN query_events q USING (query_id)
        WHERE q.task = $task AND c.ingested_at > $since AND c.ingested_at <= $until)
"""


@dataclass(frozen=True)
class EmbedderTask(OptionalHooks):
    """Builds, trains, evaluates and loads embedder versions over ``corpus``."""

    settings: RetrieverSettings
    chroma_dir: Path
    corpus: Path | None = None
    """The corpus file (JSONL or Parquet of doc_id, text, metadata; `load_corpus`)."""
    benchmark: Path | None = None
    """JSONL of ``{text, relevant_ids}``: the fixed benchmark (None: the gate decides on the
    fresh set alone)."""
    serving_version: str | Path = BUILTIN_VERSION
    """The version whose index serves production: hard negatives are mined from it."""
    progress_bar: bool = False
    name: str = "embedder"
    primary_metric: str = PRIMARY_METRIC
    greater_is_better: bool = GREATER_IS_BETTER
    builtin_version: str = BUILTIN_VERSION
    slow_first_load: ClassVar[bool] = True  # building a collection takes minutes
    _retrievers: dict[str, Retriever] = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def documents(self) -> list[Document]:
        """The corpus, read once."""
        if self.corpus is None:
            raise ValueError(f"{self.name}: no corpus configured")
        return load_corpus(self.corpus)

    @cached_property
    def store(self) -> VectorStore:
        """The ChromaDB store under ``chroma_dir``."""
        return VectorStore(self.chroma_dir)

    @property
    def base_path(self) -> Path:
        """The base model directory."""
        return base_path(self.settings.base_model)

    def count_new_signal(
        self, con: duckdb.DuckDBPyConnection, since: datetime | None, until: datetime
    ) -> int:
        """Rated results and corrections stored after ``since`` (all when None), to ``until``."""
        since = since or datetime.min.replace(tzinfo=UTC)
        params = {"task": self.name, "since": since, "until": until}
        return con.execute(_NEW_SIGNAL, params).fetchone()[0]

    def benchmark_examples(self) -> Sequence[dict[str, Any]]:
        """The benchmark file's ``{id, text, relevant_ids}`` examples (none without one)."""
        return self.load_examples(self.benchmark) if self.benchmark is not None else []

    def _split(self, query_id: str) -> str:
        digest = hashlib.sha256(f"{self.settings.training.seed}:{query_id}".encode()).digest()
        share = int.from_bytes(digest[:8], "big") / 2**64
        return "validation" if share < self.settings.training.validation_share else "train"

    def mining_search(self) -> Any:
        """Search function of the serving version's index, if that index is complete."""
        try:
            retriever = self.load(self.serving_version, build=False)
        except (IndexNotReady, FileNotFoundError) as err:
            log.info("hard negatives from stored rankings only: %s", err)
            return None
        return lambda texts: retriever.search_many(texts, self.settings.pairs.mine_depth)

    def build_training_set(
        self, con: duckdb.DuckDBPyConnection, *, fresh_share: float = 0.0
    ) -> TrainingSet:
        """Pairs from the stored feedback; the newest ``fresh_share`` of queries held back."""
        pair_settings = self.settings.pairs
        documents = {document.id: document.text for document in self.documents}
        queries, skipped = collect_judgements(
            con, pair_settings, known_ids=set(documents), task=self.name
        )
        older, fresh = hold_back_newest(queries, fresh_share)
        counts = count_signal(older)
        if counts["positive"] < pair_settings.min_positive:
            raise NotEnoughSignal(
                self.name,
                f"{counts['positive']} positive judgements stored, "
                f"{pair_settings.min_positive} needed (tasks.{self.name}.pairs.min_positive)",
                counts,
            )
        if counts["negative"] < pair_settings.min_negative:
            raise NotEnoughSignal(
                self.name,
                f"{counts['negative']} negative judgements stored, "
                f"{pair_settings.min_negative} needed (tasks.{self.name}.pairs.min_negative)",
                counts,
            )
        pairs = build_pairs(
            older,
            documents,
            pair_settings,
            mine=self.mining_search(),
            seed=self.settings.training.seed,
        )
        train = [pair for pair in pairs if self._split(pair["query_id"]) == "train"]
        validation = [pair for pair in pairs if self._split(pair["query_id"]) == "validation"]

        def lineage(items: Sequence[Any]) -> dict[str, list[str]]:
            ids: dict[str, list[str]] = {}
            for query in items:
                for kind, events in query.event_ids.items():
                    ids.setdefault(kind, []).extend(events)
            return {kind: sorted(events) for kind, events in ids.items()}

        log.info(
            "retriever training set: %d train / %d validation pairs from %d queries "
            "(%d corrected), %d fresh queries held back",
            len(train),
            len(validation),
            counts["queries"],
            counts["corrected_queries"],
            len(fresh),
        )
        confirmed = {answer.query_id for answer in confirmed_answers(con, self.name)}

        def source(query: Any) -> str:
            # A positive judgement can fall short of a confirmation (a configured
            # positive_min_rating below what counts as liked): it stays, as "rated".
            return CORRECTION if query.complete else (
                CONFIRMED if query.query_id in confirmed else "rated"
            )  # fmt: skip

        return TrainingSet(
            train=train,
            validation=validation,
            fresh=[
                {**query.example(), "source": source(query)} for query in fresh if query.positives
            ],
            event_ids=lineage(older),
            fresh_event_ids=lineage(fresh),
            skipped=dict(skipped),
        )

    def train(
        self,
        training_set: TrainingSet,
        out_dir: Path,
        *,
        progress: ProgressCallback | None = None,
        progress_bar: bool = False,
    ) -> Path:
        """Fine-tune the base embedder into ``out_dir``; the version's index is built later."""
        version = train_retriever(
            training_set.train,
            base_path=self.base_path,
            out_dir=out_dir,
            settings=self.settings.training,
            validation_pairs=training_set.validation,
            progress=progress,
            progress_bar=progress_bar,
        )
        return version.path

    def evaluate(self, version: str | Path, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Recall@1/5/10, MRR@10 and nDCG@10 over the version's own collection."""
        return evaluate(self.load(version), examples)

    def load_examples(self, path: Path) -> list[dict[str, Any]]:
        """JSONL of ``{text, relevant_ids}`` (`kaizend examples` writes some)."""
        from kaizend.models.retriever.evaluate import load_examples

        return load_examples(path)

    def text_encoder(self, version: str | Path) -> SentenceEmbedder:
        """The version's embedder on the CPU (the daemon leaves the GPU to trainings)."""
        directory = model_dir(version, self.settings.base_model)
        return SentenceEmbedder(directory, batch_size=self.settings.encode_batch_size, device="cpu")

    def load(self, version: str | Path, *, build: bool = True) -> Retriever:
        """A `Retriever` for ``version``; its collection is built or resumed first if
        ``build``, else `IndexNotReady` when it is not complete."""
        key = str(version)
        if key in self._retrievers:
            return self._retrievers[key]
        if build:
            index, _ = ensure_index(
                version,
                store=self.store,
                documents=self.documents,
                base_model=self.settings.base_model,
                batch_size=self.settings.index_batch_size,
                encode_batch_size=self.settings.encode_batch_size,
                progress_bar=self.progress_bar,
            )
        else:
            from kaizend.models.retriever.index import open_index

            index = open_index(
                version,
                store=self.store,
                documents=self.documents,
                base_model=self.settings.base_model,
                encode_batch_size=self.settings.encode_batch_size,
            )
        retriever = Retriever(index, version_label(version), self.settings.top_k)
        self._retrievers[key] = retriever
        return retriever
