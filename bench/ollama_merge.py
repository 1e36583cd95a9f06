"""Benchmark: a parser version merged into the packaged SmolLM2 GGUF for Ollama
(``ollama.publish = "merged"``), against the same version in-process, same run.

Converts the packaged base (once per data directory), trains a quick-profile adapter for a
few steps, merges it into the Q4_1 GGUF (`models.llm.gguf_merge`), reads the merged file
back with transformers' GGUF loader and compares it with the in-process version (peft, merged
in memory): the largest logit difference on one prompt (next to how far the adapter moves the
base's logits), and how many of the test-split questions get the same greedy answer. Prints
one JSON line. Run:
``.venv/bin/python bench/ollama_merge.py [--data-dir var/bench-ollama] [--queries 40] [--steps 6]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.record import record  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("var/bench-ollama"))
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"

    import torch
    from kaizend.models.fit.prompt import FitCodec
    from kaizend.models.fit.querygen import generate_examples, split_examples
    from kaizend.models.llm.base import ensure_base, source_gguf
    from kaizend.models.llm.config import profile
    from kaizend.models.llm.gguf_merge import merge_adapter
    from kaizend.models.llm.serve import ModelPredictor
    from kaizend.models.llm.train import train_llm
    from transformers import AutoModelForCausalLM

    def load_gguf(path: Path):
        return AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        ).eval()

    base = ensure_base(args.data_dir)
    splits = split_examples(generate_examples())
    config = profile("quick").model_copy(update={"max_steps": args.steps, "threads": 2})
    codec = FitCodec()
    out = args.data_dir / "version"
    version = train_llm(
        codec, splits["train"][:48], base_path=base, out_dir=out, config=config, resume=False
    )
    gguf_file = source_gguf(base)
    started = time.perf_counter()
    merged = merge_adapter(gguf_file, version.adapter_path, args.data_dir / "merged.gguf")
    merge_s = time.perf_counter() - started
    in_process = ModelPredictor.from_version(version.path, codec, threads=2, prompt_lookup=0)
    from_file = ModelPredictor(load_gguf(merged), in_process.tokenizer, codec)
    ids = torch.tensor(
        [in_process.tokenizer("Q: wind sites over 100kw in berkshire\nA:").input_ids]
    )
    with torch.inference_mode():
        expected = in_process.model(input_ids=ids).logits
        drift = float((from_file.model(input_ids=ids).logits - expected).abs().max())
        moved = float((load_gguf(gguf_file)(input_ids=ids).logits - expected).abs().max())
    texts = [row["text"] for row in splits["test"][: args.queries]]
    same = sum(from_file.generate(t)[0] == in_process.generate(t)[0] for t in texts)
    record("ollama_merge", {
        "merge_s": round(merge_s, 1),
        "base_gguf_bytes": gguf_file.stat().st_size,
        "merged_gguf_bytes": merged.stat().st_size,
        "adapter_bytes": (version.adapter_path / "adapter_model.safetensors").stat().st_size,
        "max_logit_difference_merged_vs_in_process": round(drift, 4),
        "max_logit_difference_base_vs_in_process": round(moved, 4),
        "same_answer": same,
        "queries": len(texts),
    })  # fmt: skip


if __name__ == "__main__":
    main()
