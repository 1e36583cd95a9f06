"""A version's ChromaDB collection: built from its model, resumed, refused until complete.

The collection of version ``v`` is ``sites__<label>`` (``sites__base`` for the base model,
the directory's name for a trained version) in the store under ``<data_dir>/chroma``. Its
fingerprint joins the model's and the corpus's, so retraining into the same directory, or a
changed register, rebuilds it instead of serving stale vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from kaizend.models.retriever.base import fingerprint as model_fingerprint
from kaizend.models.retriever.corpus import Document, corpus_fingerprint
from kaizend.models.retriever.embedding import SentenceEmbedder
from kaizend.models.retriever.version import model_dir, version_label
from kaizend.storage.vectors import BuildReport, VectorIndex, VectorStore, collection_name

log = logging.getLogger(__name__)


def index_fingerprint(model_path: Path, documents: Sequence[Document]) -> str:
    """What a collection was built from: the model's weights and the corpus."""
    return f"{model_fingerprint(model_path)}-{corpus_fingerprint(documents)}"


def ensure_index(
    version: str | Path,
    *,
    store: VectorStore,
    documents: Sequence[Document],
    base_model: str | Path = "",
    embedder: SentenceEmbedder | None = None,
    batch_size: int = 256,
    encode_batch_size: int = 64,
    progress_bar: bool = False,
) -> tuple[VectorIndex, BuildReport]:
    """The complete collection of ``version``, built or resumed first when needed."""
    path = model_dir(version, base_model)
    embedder = embedder or SentenceEmbedder(path, batch_size=encode_batch_size)
    return store.build(
        collection_name(version_label(version)),
        ids=[document.id for document in documents],
        documents=[document.text for document in documents],
        metadatas=[document.metadata for document in documents],
        embedding_function=embedder,
        fingerprint=index_fingerprint(path, documents),
        batch_size=batch_size,
        progress_bar=progress_bar,
    )


def open_index(
    version: str | Path,
    *,
    store: VectorStore,
    documents: Sequence[Document],
    base_model: str | Path = "",
    embedder: SentenceEmbedder | None = None,
    encode_batch_size: int = 64,
) -> VectorIndex:
    """The complete collection of ``version``; `IndexNotReady` if it is missing or partial."""
    path = model_dir(version, base_model)
    embedder = embedder or SentenceEmbedder(path, batch_size=encode_batch_size)
    return store.open(
        collection_name(version_label(version)),
        embedding_function=embedder,
        fingerprint=index_fingerprint(path, documents),
    )
