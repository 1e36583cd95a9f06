"""A tiny randomly initialised Llama and its tokenizer, built from a config in seconds.

Built once per session into a temporary directory laid out like a real base (config,
safetensors, tokenizer), so the training and serving code runs its real path without a
download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models.fit.querygen import generate_examples, split_examples
from models.parser.prompt import build_prompt, encode_target

SMALL_COUNTS = {
    "basic_technology": 20,
    "location_mapping": 30,
    "capacity_filtering": 20,
    "combined_filters": 30,
    "fit_rate_lookups": 10,
    "regional_calculations": 10,
    "aggregations": 10,
    "comparisons": 10,
    "business_queries": 10,
}


@pytest.fixture(scope="session")
def small_splits() -> dict[str, list[dict[str, Any]]]:
    """A 150-example generated set, split like the real one."""
    return split_examples(generate_examples(seed=3, counts=SMALL_COUNTS), seed=3)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory, small_splits: dict) -> Path:
    """A 2-block Llama with a byte-level BPE tokenizer trained on the prompts and targets."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = []
    for rows in small_splits.values():
        for row in rows:
            for fmt in ("slots", "json"):
                corpus.append(build_prompt(row["text"]) + encode_target(row["expected"], fmt))
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        # The default 0.02 leaves tied output logits nearly flat, so a tiny model could
        # never become confident enough to stop; larger weights let it learn in steps.
        initializer_range=0.3,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        # No pad_token_id: Embedding(padding_idx=...) would zero the tied output row of the
        # end token, which could then never win the argmax.
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path
