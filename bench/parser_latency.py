"""Benchmark: parse latency of a trained parser version on 2 CPU cores, same run.

Variants, each over the same test-split questions:

- ``baseline``: the unoptimised path, the adapter kept separate (peft) and
  ``model.generate`` (greedy, KV cache, stop at the end token);
- ``merged``: adapter merged into the weights, kaizend's decoding loop (no output head on
  prompt positions, stop as soon as the answer is complete), unconstrained;
- ``merged_lookup``: the same with drafts verified in the same pass (identical output): the
  rule parser's answer with the prompt, then copies from the prompt;
- ``merged_constrained`` and ``merged_lookup_constrained`` (the serving default): the same
  two decoding loops held to the target format's grammar (`models.llm.constrained`),
  timed question by question in turn with their unconstrained twins, with
  ``constrained_overhead_p50_ms`` against them;
- ``merged_lookup_int8``: the same with dynamically quantised int8 linear layers;
- ``json_forced``: what a compact-JSON answer would cost: the merged model fed the JSON
  target one token per pass, as decoding it would.

Also reports where the time goes (prefill, per generated token, expansion and validation).
Prints one JSON line. Run:
``.venv/bin/python bench/parser_latency.py --version DIR [--queries 100] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kaizend.models.fit.parser import trained_codec  # noqa: E402
from kaizend.models.fit.prompt import decode_target, encode_target, make_prompt  # noqa: E402
from kaizend.models.fit.querygen import generate_examples, split_examples  # noqa: E402
from kaizend.models.fit.schema import to_compact_dict  # noqa: E402
from kaizend.models.llm.base import load_base  # noqa: E402
from kaizend.models.llm.serve import ModelPredictor  # noqa: E402
from kaizend.models.llm.version import LlmVersion  # noqa: E402


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49], 1),
        "p95_ms": round(cuts[94], 1),
        "mean_ms": round(statistics.fmean(ordered), 1),
    }


def _time(parse: Callable[[str], Any], texts: list[str]) -> tuple[list[float], list[Any]]:
    parse(texts[0])  # warm-up: first-call allocations are not serving latency
    samples, outputs = [], []
    for text in texts:
        started = time.perf_counter()
        outputs.append(parse(text))
        samples.append((time.perf_counter() - started) * 1000)
    return samples, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--version", type=Path, required=True, help="trained version directory")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    options = parser.parse_args()

    import torch
    from peft import PeftModel

    torch.set_num_threads(options.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # A seeded sample: the split is ordered by category, so its head is all one-word answers.
    test = split_examples(generate_examples())["test"]
    rows = random.Random(0).sample(test, min(options.queries, len(test)))
    texts = [row["text"] for row in rows]
    version = LlmVersion.load(options.version)
    codec = trained_codec(options.version)
    fmt, hint = codec.target_format, codec.with_hint

    def build_prompt(text: str, target_format: str = fmt) -> str:
        return make_prompt(text, target_format, with_hint=hint)  # type: ignore[arg-type]

    report: dict[str, Any] = {"bench": "parser_latency", "queries": len(texts)}

    model, tokenizer = load_base(version.base_path)
    unmerged = PeftModel.from_pretrained(model, str(version.adapter_path)).eval()

    def baseline_parse(text: str) -> str:
        ids = tokenizer(build_prompt(text), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = unmerged.generate(
                **ids,
                max_new_tokens=160,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        raw = tokenizer.decode(out[0, ids.input_ids.shape[1] :], skip_special_tokens=True)
        try:
            return json.dumps(to_compact_dict(decode_target(raw, fmt)))
        except ValueError:
            return "fallback"

    samples, baseline_out = _time(baseline_parse, texts)
    report["baseline"] = _stats(samples)

    def record(name: str, samples: list[float], results: list[Any]) -> None:
        report[name] = _stats(samples)
        report[name]["mean_generated_tokens"] = round(
            statistics.fmean(result.generated_tokens for result in results), 2
        )
        same = sum(
            ("fallback" if result.fallback_used else json.dumps(result.output)) == expected
            for result, expected in zip(results, baseline_out, strict=True)
        )
        report[name]["mean_forward_passes"] = round(
            statistics.fmean(result.forward_passes for result in results), 2
        )
        report[name]["same_output_as_baseline"] = round(same / len(texts), 4)

    def measure(name: str, parser: ModelPredictor) -> None:
        record(name, *_time(parser.answer, texts))

    def measure_twins(name: str, plain: ModelPredictor, held: ModelPredictor) -> None:
        # Interleaved question by question, so that a load change on a shared machine hits
        # both alike: the difference is the matcher's cost.
        plain.answer(texts[0])  # warm-up
        held.answer(texts[0])
        runs: dict[str, tuple[list[float], list[Any]]] = {"plain": ([], []), "held": ([], [])}
        for text in texts:
            for key, parser in (("plain", plain), ("held", held)):
                started = time.perf_counter()
                runs[key][1].append(parser.answer(text))
                runs[key][0].append((time.perf_counter() - started) * 1000)
        record(name, *runs["plain"])
        record(f"{name}_constrained", *runs["held"])
        report[f"{name}_constrained"]["constrained_overhead_p50_ms"] = round(
            report[f"{name}_constrained"]["p50_ms"] - report[name]["p50_ms"], 1
        )

    merged = ModelPredictor.from_version(options.version, codec, prompt_lookup=0, constrained=False)
    lookup = ModelPredictor.from_version(
        options.version, codec, prompt_lookup=10, constrained=False
    )
    # Each unconstrained variant and its constrained twin (same weights, the matcher added).
    for name, plain, lookahead in (("merged", merged, 0), ("merged_lookup", lookup, 10)):
        held = ModelPredictor(
            plain.model, plain.tokenizer, codec, name=name, prompt_lookup=lookahead
        )
        measure_twins(name, plain, held)

    # Where the time goes, on the merged model.
    prefill, per_token, expand = [], [], []
    with torch.inference_mode():
        for row in rows:
            prompt = tokenizer(build_prompt(row["text"]), add_special_tokens=False).input_ids
            started = time.perf_counter()
            out = merged.model(input_ids=torch.tensor([prompt]), use_cache=True, logits_to_keep=1)
            prefill.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            merged.model(
                input_ids=torch.tensor([[5]]),
                past_key_values=out.past_key_values,
                use_cache=True,
                logits_to_keep=1,
            )
            per_token.append((time.perf_counter() - started) * 1000)
            target = encode_target(row["expected"], fmt)
            started = time.perf_counter()
            decode_target(target, fmt)
            expand.append((time.perf_counter() - started) * 1000)
    report["breakdown"] = {
        "prompt_tokens_mean": round(
            statistics.fmean(
                len(tokenizer(build_prompt(t), add_special_tokens=False).input_ids) for t in texts
            ),
            1,
        ),
        "prefill_ms_p50": round(statistics.median(prefill), 1),
        "decode_ms_per_token_p50": round(statistics.median(per_token), 1),
        "expand_validate_ms_p50": round(statistics.median(expand), 3),
    }

    # A compact-JSON answer decoded token by token (teacher-forced: same passes, any model).
    def json_forced(row: dict[str, Any]) -> None:
        prompt_text = build_prompt(row["text"], "json")
        prompt = tokenizer(prompt_text, add_special_tokens=False).input_ids
        target = tokenizer(encode_target(row["expected"], "json"), add_special_tokens=False)
        with torch.inference_mode():
            out = merged.model(input_ids=torch.tensor([prompt]), use_cache=True, logits_to_keep=1)
            for token in target.input_ids:
                out = merged.model(
                    input_ids=torch.tensor([[token]]),
                    past_key_values=out.past_key_values,
                    use_cache=True,
                    logits_to_keep=1,
                )
                out.logits[0, -1].argmax()

    samples, _ = _time(json_forced, rows)
    report["json_forced"] = _stats(samples)
    report["json_forced"]["mean_generated_tokens"] = round(
        statistics.fmean(
            len(tokenizer(encode_target(row["expected"], "json")).input_ids) for row in rows
        ),
        2,
    )
    try:
        measure(
            "merged_lookup_int8",
            ModelPredictor.from_version(
                options.version, codec, quantize="int8", prompt_lookup=10, constrained=False
            ),
        )
    except Exception as err:  # noqa: BLE001 - a missing int8 kernel is a result, not a crash
        report["merged_lookup_int8"] = {"error": f"{type(err).__name__}: {err}"}
    best = min(
        (value["p50_ms"], name)
        for name, value in report.items()
        if isinstance(value, dict) and "p50_ms" in value and name != "json_forced"
    )
    report["best"] = best[1]
    report["speedup_p50_vs_baseline"] = round(report["baseline"]["p50_ms"] / best[0], 2)
    record("parser_latency", report)


if __name__ == "__main__":
    main()
