"""The FIT retriever: the ``embedder`` kind over the FIT register's sites, with the FIT
benchmark queries, simulated users and drift fields (the ``fit-retriever`` kind)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from kaizend.models.fit.corpus import site_documents
from kaizend.models.fit.retrieval import RetrievalQuery, generate_queries
from kaizend.models.fit.sites import SITE_COUNT, generate_sites
from kaizend.models.kinds import TaskContext
from kaizend.models.retriever.config import RetrieverSettings
from kaizend.models.retriever.corpus import Document
from kaizend.models.retriever.kind import chroma_dir, halved, with_serving
from kaizend.models.retriever.task import EmbedderTask

BENCHMARK_SEED = 4_004
BENCHMARK_QUERIES = 300


@dataclass(frozen=True)
class RetrieverTask(EmbedderTask):
    """`EmbedderTask` whose corpus is the generated FIT register (one document per site)."""

    site_count: int = SITE_COUNT
    site_seed: int = 7
    benchmark_size: int = BENCHMARK_QUERIES

    @cached_property
    def sites(self) -> Any:
        """The FIT register the corpus is built from."""
        return generate_sites(seed=self.site_seed, n=self.site_count)

    @cached_property
    def documents(self) -> list[Document]:
        """One document per site."""
        return site_documents(self.sites)

    def benchmark_queries(self) -> list[RetrievalQuery]:
        """The fixed benchmark: generated queries with their relevant sites (its own seed)."""
        return generate_queries(self.sites, self.benchmark_size, seed=BENCHMARK_SEED)

    def benchmark_examples(self) -> Sequence[dict[str, Any]]:
        """The benchmark queries as ``{id, text, relevant_ids}`` examples."""
        return [query.to_example() for query in self.benchmark_queries()]

    def drift_fields(self) -> Any:
        from kaizend.models.fit.drift import FIT_FIELDS

        return FIT_FIELDS

    def simulate_traffic(
        self,
        predictor: Any,
        *,
        queries: int,
        seed: int,
        model_version: str,
        options: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """Retrieval queries over the FIT register, rated result by result, some corrected.
        The queries never ask what the benchmark queries ask, so the benchmark stays held
        out. No options."""
        from kaizend.models.fit.retrieval import Register, simulate_feedback

        if options:
            raise ValueError(f"unknown options {sorted(options)}: the retriever takes none")
        register = Register(self.sites)
        held_out = {query.key for query in self.benchmark_queries()}
        generated = generate_queries(register, queries, seed=seed, exclude_keys=held_out)
        return simulate_feedback(
            generated, predictor, register, seed=seed, model_version=model_version
        )


class FitRetrieverKind:
    name = "fit-retriever"
    summary = "FIT question -> ranked register sites: the embedder kind over the FIT register"
    settings_model = RetrieverSettings

    def build(self, context: TaskContext) -> RetrieverTask:
        task = RetrieverTask(
            halved(context.settings, context.halve_batch),
            chroma_dir=chroma_dir(context),
            name=context.name,
        )
        return with_serving(task, context)


KIND = FitRetrieverKind()
