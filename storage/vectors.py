"""ChromaDB vector collections, one per embedder version.

A version's documents live in the collection ``sites__<version>`` of a ``PersistentClient``
under the directory the caller names (the daemon uses ``<data_dir>/chroma``), in cosine
space. The caller passes the embedding function: an object with Chroma's EmbeddingFunction
interface (``__call__(input) -> embeddings``, ``name()``, ``get_config()``, ...), so Chroma
never falls back to fetching its own default model. Storage does not know what model it is.

Building is resumable and marked: the collection's metadata carries the ``fingerprint`` of
what it was built from (model and corpus), the expected ``doc_count``, and ``complete``,
set only once every document is in. `VectorStore.open` refuses anything else, so a version is
never served from a half-built collection; a fingerprint that differs from the caller's
means the collection belongs to another model of the same name and is rebuilt.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaizend.core.errors import KaizendError

log = logging.getLogger(__name__)

COLLECTION_PREFIX = "sites__"
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
_MAX_NAME = 63  # Chroma allows 512, but short names keep logs and listings readable


class IndexNotReady(KaizendError, LookupError):
    """A version's collection is missing, half-built, or built from something else."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(
            f"vector collection {name!r} cannot serve: {reason}; build it (for example "
            "`kaizend search --model VERSION ...` builds and resumes it) and try again"
        )
        self.name = name
        self.reason = reason


def collection_name(version: str) -> str:
    """``sites__<version>``, with anything Chroma's name rules forbid replaced by ``-``."""
    cleaned = _NAME_CHARS.sub("-", version).strip("-_") or "version"
    name = f"{COLLECTION_PREFIX}{cleaned}"[:_MAX_NAME]
    return name.rstrip("-_")


@dataclass(frozen=True)
class BuildReport:
    """What one `VectorStore.build` call did."""

    name: str
    documents: int
    added: int
    skipped_present: int
    rebuilt: bool
    seconds: float
    embed_seconds: float
    add_seconds: float

    @property
    def docs_per_s(self) -> float:
        """Documents added per second of the whole call (embedding and adding)."""
        return self.added / self.seconds if self.seconds > 0 else 0.0


class VectorIndex:
    """A complete collection, ready to search."""

    def __init__(self, collection: Any, embedding_function: Any) -> None:
        self.collection = collection
        self.name: str = collection.name
        self._embed = embedding_function

    def __len__(self) -> int:
        return self.collection.count()

    def embed_queries(self, texts: Sequence[str]) -> Any:
        """Query embeddings from the collection's embedding function."""
        embed_query = getattr(self._embed, "embed_query", None)
        return (embed_query or self._embed)(list(texts))

    def query_embeddings(self, embeddings: Any, k: int = 10) -> list[list[tuple[str, float]]]:
        """The ``k`` nearest documents of each embedding as (id, cosine similarity), best first."""
        if len(embeddings) == 0:
            return []
        k = max(1, min(k, len(self)))
        result = self.collection.query(
            query_embeddings=[list(map(float, e)) for e in embeddings],
            n_results=k,
            include=["distances"],
        )
        return [
            [(doc_id, 1.0 - float(distance)) for doc_id, distance in zip(ids, dists, strict=True)]
            for ids, dists in zip(result["ids"], result["distances"], strict=True)
        ]

    def documents(self, ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """Stored text and metadata of the documents ``ids`` (those that exist)."""
        got = self.collection.get(ids=list(ids), include=["documents", "metadatas"])
        return {
            doc_id: (text or "", dict(meta or {}))
            for doc_id, text, meta in zip(
                got["ids"], got["documents"], got["metadatas"], strict=True
            )
        }

    def query(self, texts: Sequence[str], k: int = 10) -> list[list[tuple[str, float]]]:
        """Embed ``texts`` and return each one's ``k`` best (id, cosine similarity)."""
        return self.query_embeddings(self.embed_queries(texts), k)


class VectorStore:
    """The Chroma persistent client under ``directory``, and the collections in it."""

    def __init__(self, directory: Path) -> None:
        import chromadb
        from chromadb.config import Settings

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._client = chromadb.PersistentClient(
            path=str(directory), settings=Settings(anonymized_telemetry=False)
        )

    def names(self) -> list[str]:
        """Names of every collection in the store."""
        return sorted(
            c.name if hasattr(c, "name") else str(c) for c in self._client.list_collections()
        )

    def state(self, name: str) -> dict[str, Any] | None:
        """The build marker of collection ``name`` (with its current ``count``), or None."""
        collection = self._get(name)
        if collection is None:
            return None
        return {**(collection.metadata or {}), "count": collection.count()}

    def drop(self, name: str) -> bool:
        """Delete collection ``name``; False when there was none."""
        if self._get(name) is None:
            return False
        self._client.delete_collection(name)
        log.info("vector collection %s dropped", name)
        return True

    def _get(self, name: str, embedding_function: Any = None) -> Any:
        from chromadb.errors import NotFoundError

        try:
            if embedding_function is None:
                return self._client.get_collection(name)
            return self._client.get_collection(name, embedding_function=embedding_function)
        except NotFoundError:
            return None
        except ValueError as err:
            if "does not exist" in str(err):
                return None
            raise IndexNotReady(name, f"Chroma refuses to open it: {err}") from err

    def open(
        self, name: str, *, embedding_function: Any, fingerprint: str | None = None
    ) -> VectorIndex:
        """A complete collection to search; `IndexNotReady` for a missing or partial one.

        With ``fingerprint``, a collection built from anything else is refused too.
        """
        collection = self._get(name, embedding_function)
        if collection is None:
            raise IndexNotReady(name, "it does not exist")
        meta = collection.metadata or {}
        if fingerprint is not None and meta.get("fingerprint") != fingerprint:
            raise IndexNotReady(
                name, f"it was built from {meta.get('fingerprint')}, not {fingerprint}"
            )
        count = collection.count()
        if not meta.get("complete") or count != meta.get("doc_count"):
            raise IndexNotReady(
                name, f"it is half-built ({count} of {meta.get('doc_count')} documents)"
            )
        return VectorIndex(collection, embedding_function)

    def build(
        self,
        name: str,
        *,
        ids: Sequence[str],
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]] | None = None,
        embedding_function: Any,
        fingerprint: str,
        batch_size: int = 256,
        progress_bar: bool = False,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> tuple[VectorIndex, BuildReport]:
        """Embed and add every document not yet in collection ``name``; mark it complete.

        Resumes a partial build of the same ``fingerprint`` (ids already present are
        skipped) and rebuilds from scratch when the fingerprint differs. Embedding the next
        batch overlaps with Chroma adding the previous one. ``on_batch(done, total)`` is
        called after each batch. Returns the open index and what was done.
        """
        if len(ids) != len(documents) or (metadatas is not None and len(metadatas) != len(ids)):
            raise ValueError("ids, documents and metadatas must have the same length")
        if len(set(ids)) != len(ids):
            raise ValueError("document ids must be unique")
        started = time.perf_counter()
        total = len(ids)
        collection = self._get(name, embedding_function)
        rebuilt = False
        if collection is not None:
            meta = collection.metadata or {}
            if meta.get("fingerprint") != fingerprint:
                log.warning(
                    "vector collection %s was built from %s, not %s: rebuilding it",
                    name,
                    meta.get("fingerprint"),
                    fingerprint,
                )
                self._client.delete_collection(name)
                collection, rebuilt = None, True
        marker = {"fingerprint": fingerprint, "doc_count": total}
        if collection is None:
            collection = self._client.create_collection(
                name,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={**marker, "complete": False},
                embedding_function=embedding_function,
            )
        present = self._present_ids(collection)
        todo = [index for index, doc_id in enumerate(ids) if doc_id not in present]
        if not todo and (collection.metadata or {}).get("complete"):
            index = VectorIndex(collection, embedding_function)
            report = BuildReport(name, total, 0, len(present), rebuilt, 0.0, 0.0, 0.0)
            return index, report
        log.info(
            "vector collection %s: build started, %d of %d documents to add (%d present)",
            name,
            len(todo),
            total,
            len(present),
        )
        bar = None
        if progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=total - len(todo), desc=name, unit="doc")
        embed_seconds = 0.0
        add_seconds = [0.0]

        def add(batch: list[int], embeddings: Any) -> None:
            began = time.perf_counter()
            collection.add(
                ids=[ids[i] for i in batch],
                embeddings=embeddings,
                documents=[documents[i] for i in batch],
                metadatas=[metadatas[i] for i in batch] if metadatas is not None else None,
            )
            add_seconds[0] += time.perf_counter() - began

        done = total - len(todo)
        # One worker: Chroma adds batch n while the model embeds batch n+1.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chroma-add") as pool:
            pending: Future[None] | None = None
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                began = time.perf_counter()
                embeddings = embedding_function([documents[i] for i in batch])
                embed_seconds += time.perf_counter() - began
                if pending is not None:
                    pending.result()
                pending = pool.submit(add, batch, embeddings)
                done += len(batch)
                if bar is not None:
                    bar.update(len(batch))
                if on_batch is not None:
                    on_batch(done, total)
                if start // batch_size % 20 == 0:
                    log.info("vector collection %s: %d/%d documents embedded", name, done, total)
            if pending is not None:
                pending.result()
        if bar is not None:
            bar.close()
        count = collection.count()
        if count != total:
            raise IndexNotReady(name, f"after the build it holds {count} of {total} documents")
        collection.modify(metadata={**marker, "complete": True})
        seconds = time.perf_counter() - started
        log.info(
            "vector collection %s: build finished, %d documents added in %.1f s "
            "(embedding %.1f s, Chroma %.1f s)",
            name,
            len(todo),
            seconds,
            embed_seconds,
            add_seconds[0],
        )
        report = BuildReport(
            name, total, len(todo), len(present), rebuilt, seconds, embed_seconds, add_seconds[0]
        )
        return VectorIndex(collection, embedding_function), report

    @staticmethod
    def _present_ids(collection: Any, page: int = 10_000) -> set[str]:
        present: set[str] = set()
        offset = 0
        while True:
            got = collection.get(include=[], limit=page, offset=offset)["ids"]
            present.update(got)
            if len(got) < page:
                return present
            offset += page
