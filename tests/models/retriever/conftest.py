"""A tiny sentence-transformers model (2-layer BERT, hidden size 32, the packaged MiniLM
tokenizer, mean pooling), built once per session, and a small register to index."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kaizend.models.retriever.config import RetrieverSettings

TINY_SITES = 300


def build_tiny_model(directory: Path) -> Path:
    """Save a randomly initialised tiny embedder to ``directory``; return it."""
    import torch
    from kaizend.models.retriever.base import packaged_base
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    transformer_dir = directory / "transformer"
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(transformer_dir)
    base = packaged_base()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(base / name, transformer_dir / name)
    try:  # sentence-transformers 6 moved the modules
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer

    word = Transformer(str(transformer_dir), max_seq_length=96)
    pooling = Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[word, pooling], device="cpu")
    model.save(str(directory / "model"))
    return directory / "model"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of the tiny sentence-transformers model."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-embedder"))


@pytest.fixture
def tiny_settings(tiny_model: Path) -> RetrieverSettings:
    """Retriever settings on the tiny model, training a handful of steps."""
    return RetrieverSettings(
        base_model=str(tiny_model),
        index_batch_size=128,
        pairs={"min_positive": 5, "min_negative": 5, "hard_negatives": 1},
        training={"batch_size": 8, "max_steps": 4, "eval_steps": 2, "learning_rate": 1e-3},
    )
