"""Per-version ChromaDB collections: built, resumed, refused while half-built, rebuilt."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kaizend.storage.vectors import IndexNotReady, VectorStore, collection_name


class BagOfWords:
    """A deterministic embedding function: hashed word counts, unit length.

    Texts sharing words are close, so nearest-neighbour answers are predictable.
    """

    def __init__(self, fail_after_calls: int | None = None) -> None:
        self.calls = 0
        self.embedded: list[str] = []
        self.fail_after_calls = fail_after_calls

    def __call__(self, input: Any) -> list[np.ndarray]:  # noqa: A002
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise RuntimeError("embedder died mid-build")
        self.calls += 1
        self.embedded.extend(input)
        vectors = []
        for text in input:
            vector = np.zeros(64, dtype=np.float32)
            for word in text.lower().split():
                vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
            vectors.append(vector / max(np.linalg.norm(vector), 1e-9))
        return vectors

    def embed_query(self, input: Any) -> list[np.ndarray]:  # noqa: A002
        return self(input)

    @staticmethod
    def name() -> str:
        return "test-bag-of-words"

    def get_config(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> BagOfWords:
        return BagOfWords()

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine"]

    def is_legacy(self) -> bool:
        return False


WORDS = ["wind", "solar", "hydro", "biogas", "berkshire", "cornwall", "devon", "kent", "large"]


def corpus(n: int = 50) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    ids = [str(1000 + i) for i in range(n)]
    texts = [f"{WORDS[i % 4]} site in {WORDS[4 + i % 4]} number{i}" for i in range(n)]
    metadatas = [{"n": i} for i in range(n)]
    return ids, texts, metadatas


def test_build_then_search_finds_the_matching_document(tmp_path: Path) -> None:
    ids, texts, metadatas = corpus()
    store = VectorStore(tmp_path / "chroma")
    index, report = store.build(
        "sites__base", ids=ids, documents=texts, metadatas=metadatas,
        embedding_function=BagOfWords(), fingerprint="m1", batch_size=16,
    )  # fmt: skip
    assert (report.added, report.rebuilt) == (50, False)
    assert len(index) == 50
    [results] = index.query(["solar site in cornwall number5"], k=3)
    assert results[0][0] == "1005"
    assert results[0][1] == pytest.approx(1.0, abs=1e-4)  # cosine similarity of identical text
    assert [score for _, score in results] == sorted((s for _, s in results), reverse=True)
    assert index.documents(["1005"])["1005"] == (texts[5], {"n": 5})
    # A second store on the same directory (a restart) serves the same collection.
    reopened = VectorStore(tmp_path / "chroma").open(
        "sites__base", embedding_function=BagOfWords(), fingerprint="m1"
    )
    assert reopened.query(["solar site in cornwall number5"], k=1)[0][0][0] == "1005"


def test_interrupted_build_is_refused_then_resumed_without_re_embedding(tmp_path: Path) -> None:
    ids, texts, _ = corpus()
    store = VectorStore(tmp_path / "chroma")
    with pytest.raises(RuntimeError, match="mid-build"):
        store.build("sites__v1", ids=ids, documents=texts,
                    embedding_function=BagOfWords(fail_after_calls=2), fingerprint="m1",
                    batch_size=10)  # fmt: skip
    with pytest.raises(IndexNotReady, match="half-built"):
        store.open("sites__v1", embedding_function=BagOfWords(), fingerprint="m1")
    assert store.state("sites__v1")["complete"] is False

    embedder = BagOfWords()
    index, report = store.build(
        "sites__v1", ids=ids, documents=texts, embedding_function=embedder, fingerprint="m1",
        batch_size=10,
    )  # fmt: skip
    assert report.skipped_present == 20 and report.added == 30
    assert sorted(embedder.embedded) == sorted(texts[20:])  # only the missing ones
    assert len(index) == 50
    assert store.state("sites__v1")["complete"] is True
    store.open("sites__v1", embedding_function=BagOfWords(), fingerprint="m1")


def test_another_model_under_the_same_name_rebuilds_and_old_fingerprint_is_refused(
    tmp_path: Path,
) -> None:
    ids, texts, _ = corpus(20)
    store = VectorStore(tmp_path / "chroma")
    store.build("sites__v2", ids=ids, documents=texts, embedding_function=BagOfWords(),
                fingerprint="old")  # fmt: skip
    embedder = BagOfWords()
    _, again = store.build("sites__v2", ids=ids, documents=texts, embedding_function=embedder,
                           fingerprint="old")  # fmt: skip
    assert again.added == 0 and embedder.calls == 0  # complete: nothing to do
    _, report = store.build("sites__v2", ids=ids, documents=texts, embedding_function=embedder,
                            fingerprint="new")  # fmt: skip
    assert report.rebuilt and report.added == 20
    with pytest.raises(IndexNotReady, match="built from new, not old"):
        store.open("sites__v2", embedding_function=BagOfWords(), fingerprint="old")


def test_missing_collection_is_refused_with_what_to_do(tmp_path: Path) -> None:
    store = VectorStore(tmp_path / "chroma")
    with pytest.raises(IndexNotReady, match="does not exist.*build it"):
        store.open("sites__nope", embedding_function=BagOfWords())


def test_collections_are_cosine_and_use_the_callers_embedding_function(tmp_path: Path) -> None:
    ids, texts, _ = corpus(5)
    store = VectorStore(tmp_path / "chroma")
    index, _ = store.build("sites__base", ids=ids, documents=texts,
                           embedding_function=BagOfWords(), fingerprint="m")  # fmt: skip
    configuration = index.collection.configuration
    assert configuration["hnsw"]["space"] == "cosine"
    assert configuration["embedding_function"].name() == "test-bag-of-words"


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("base", "sites__base"),
        ("retriever-v3", "sites__retriever-v3"),
        ("manual 2026/11/23 10:00", "sites__manual-2026-11-23-10-00"),
        ("..", "sites__version"),
    ],
)
def test_collection_names_follow_chromas_rules(tmp_path: Path, version: str, expected: str) -> None:
    name = collection_name(version)
    assert name == expected
    store = VectorStore(tmp_path / "chroma")
    store.build(name, ids=["1"], documents=["wind"], embedding_function=BagOfWords(),
                fingerprint="m")  # fmt: skip
    assert name in store.names()
