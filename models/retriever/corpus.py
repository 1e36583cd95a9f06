"""An embedder task's corpus: the documents its index holds, from a file the team supplies.

A corpus file is JSONL (one object a line) or Parquet, with a ``doc_id``, a ``text`` and an
optional ``metadata`` object of scalar values. A changed corpus has another
`corpus_fingerprint`, so each version's collection is rebuilt from the new documents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Document:
    """One document as the index stores it."""

    id: str
    text: str
    metadata: dict[str, Any]


class CorpusError(ValueError):
    """A corpus file that cannot be read as documents; the message names the place."""


def _document(row: Any, where: str) -> Document:
    if not isinstance(row, dict):
        raise CorpusError(f"{where}: a document is an object with doc_id and text")
    doc_id, text = row.get("doc_id"), row.get("text")
    if doc_id is None or not isinstance(text, str) or not text.strip():
        raise CorpusError(f"{where}: needs a doc_id and a non-empty text")
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, dict) or any(
        not isinstance(v, str | int | float | bool) for v in metadata.values()
    ):
        raise CorpusError(f"{where}: metadata must be an object of strings, numbers, booleans")
    return Document(str(doc_id), text, metadata)


def load_corpus(path: Path) -> list[Document]:
    """The documents of a JSONL or Parquet file, in file order; `CorpusError` naming the line
    (or row) of a bad one and a repeated doc_id."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"no corpus file {path}")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        documents = [_document(row, f"{path} row {i}") for i, row in enumerate(rows, 1)]
    else:
        documents = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise CorpusError(f"{path}:{number}: not JSON: {err}") from err
            documents.append(_document(row, f"{path}:{number}"))
    seen: set[str] = set()
    for document in documents:
        if document.id in seen:
            raise CorpusError(f"{path}: doc_id {document.id!r} appears twice")
        seen.add(document.id)
    if not documents:
        raise CorpusError(f"{path}: no documents")
    return documents


def corpus_fingerprint(documents: Sequence[Document]) -> str:
    """A hash over every id and text: a changed corpus means a rebuilt index."""
    digest = hashlib.sha256()
    for document in documents:
        digest.update(f"{document.id}\t{document.text}\n".encode())
    return digest.hexdigest()[:16]
