"""Benchmark: indexing the FIT register into ChromaDB against the raw encoder, same run.

- ``raw``: ``model.encode`` over every document (the ceiling: nothing but the embedder);
- ``build``: `VectorStore.build` of a fresh collection, as `kaizend search` does it:
  embedding in batches, Chroma adding the previous batch meanwhile, the completion marker;
- ``query``: latency of one search (embed the query, then the collection's top 10), over
  generated queries, one at a time, after a warm-up.

The build should reach at least 80% of the raw rate (Chroma's share of the time small).
Prints one JSON line. Run:
``.venv/bin/python bench/retriever_indexing.py [--docs 40194] [--queries 200] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kaizend.models.fit.corpus import site_documents  # noqa: E402
from kaizend.models.fit.retrieval import generate_queries  # noqa: E402
from kaizend.models.fit.sites import generate_sites  # noqa: E402
from kaizend.models.retriever.base import base_path  # noqa: E402
from kaizend.models.retriever.config import RetrieverSettings  # noqa: E402
from kaizend.models.retriever.embedding import SentenceEmbedder  # noqa: E402
from kaizend.models.retriever.index import index_fingerprint  # noqa: E402
from kaizend.storage.vectors import VectorStore, collection_name  # noqa: E402


def _percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(sorted(samples), n=100, method="inclusive")
    return {"p50_ms": round(cuts[49], 1), "p95_ms": round(cuts[94], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=None, help="first N documents (all)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="documents per add")
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if options.threads:
        torch.set_num_threads(options.threads)
    settings = RetrieverSettings()
    batch_size = options.batch_size or settings.index_batch_size

    sites = generate_sites()
    documents = site_documents(sites)[: options.docs]
    texts = [document.text for document in documents]
    model_path = base_path(settings.base_model)
    embedder = SentenceEmbedder(model_path, batch_size=settings.encode_batch_size)
    embedder(texts[:256])  # warm-up: allocations and lazy initialisation are not throughput

    started = time.perf_counter()
    embedder.model.encode(texts, batch_size=settings.encode_batch_size, normalize_embeddings=True)
    raw_seconds = time.perf_counter() - started

    with tempfile.TemporaryDirectory(prefix="kaizend-bench-chroma-") as directory:
        store = VectorStore(Path(directory))
        started = time.perf_counter()
        index, report = store.build(
            collection_name("base"),
            ids=[document.id for document in documents],
            documents=texts,
            metadatas=[document.metadata for document in documents],
            embedding_function=embedder,
            fingerprint=index_fingerprint(model_path, documents),
            batch_size=batch_size,
        )
        build_seconds = time.perf_counter() - started

        queries = [q.text for q in generate_queries(sites, options.queries, seed=99)]
        index.query(queries[:5])  # warm-up
        total, embed, search = [], [], []
        for text in queries:
            began = time.perf_counter()
            vector = index.embed_queries([text])
            middle = time.perf_counter()
            index.query_embeddings(vector, 10)
            ended = time.perf_counter()
            total.append((ended - began) * 1000)
            embed.append((middle - began) * 1000)
            search.append((ended - middle) * 1000)

    raw_rate = len(texts) / raw_seconds
    build_rate = len(texts) / build_seconds
    print(
        json.dumps(
            {
                "benchmark": "retriever_indexing",
                "documents": len(texts),
                "threads": torch.get_num_threads(),
                "batch_size": batch_size,
                "encode_batch_size": settings.encode_batch_size,
                "raw_encode_docs_per_s": round(raw_rate, 1),
                "build_docs_per_s": round(build_rate, 1),
                "build_vs_raw": round(build_rate / raw_rate, 3),
                "raw_encode_s": round(raw_seconds, 1),
                "build_s": round(build_seconds, 1),
                "build_embed_s": round(report.embed_seconds, 1),
                "build_chroma_add_s": round(report.add_seconds, 1),
                "chroma_add_share": round(report.add_seconds / build_seconds, 3),
                "query": {
                    **_percentiles(total),
                    "embed_p50_ms": round(statistics.median(embed), 1),
                    "search_p50_ms": round(statistics.median(search), 1),
                    "queries": len(total),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
