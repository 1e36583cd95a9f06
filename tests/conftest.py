"""Shared fixtures: a real nats-server on a free port, settings in a temporary directory,
the daemon running in-process, and a tiny randomly initialised Llama with its tokenizer.

The tiny Llama is built from a config in seconds, once per session, into a temporary
directory laid out like a real base (config, safetensors, tokenizer), so the training and
serving code runs its real path without a download.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import pytest
from kaizend.core.config import Settings
from kaizend.daemon.app import Daemon
from kaizend.daemon.nats_server import EmbeddedNats
from kaizend.handlers.publish import Outgoing
from kaizend.models.fit.prompt import FitCodec, build_prompt, encode_target
from kaizend.models.fit.querygen import generate_examples, split_examples

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A real nats-server with JetStream, on a free port, with a temporary store."""
    with EmbeddedNats(tmp_path / "nats-store") as server:
        yield server


FIT_TASKS: dict[str, dict[str, Any]] = {
    "parser": {"kind": "fit-parser"},
    "retriever": {"kind": "fit-retriever", "triggers": {"min_new_signal": 200}},
}
"""The shipped config.toml's tasks: the FIT parser and retriever."""


FIT_TASKS_ENV = {"KAIZEND_TASKS": json.dumps(FIT_TASKS)}
"""The environment that declares the FIT tasks, for a subprocess started without a
configuration file."""


def fit_tasks(**tasks: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`FIT_TASKS` with some of each task's keys replaced (a nested table as a whole)."""
    return {name: {**declared, **tasks.get(name, {})} for name, declared in FIT_TASKS.items()}


def fit_parser_task(**fields: Any) -> Any:
    """The FIT parser task outside a daemon (name ``parser``, the quick profile)."""
    from kaizend.models.fit.parser import FitParserTask
    from kaizend.models.llm.config import PROFILES

    return FitParserTask(
        **{"name": "parser", "codec": FitCodec(), "config": PROFILES["quick"], **fields}
    )


def make_settings(data_dir: Path, nats_url: str, **sections: dict[str, Any]) -> Settings:
    """Settings of a test daemon with the FIT tasks; ``tasks={"parser": {...}}`` replaces
    keys of a task's declaration, other sections update the defaults' keys."""
    tasks = fit_tasks(**sections.pop("tasks", {}))
    base: dict[str, dict[str, Any]] = {
        "tasks": tasks,
        "drift": {"embedder_task": "retriever"},
        "daemon": {"data_dir": data_dir, "shutdown_grace_s": 10},
        "nats": {"url": nats_url, "request_timeout_s": 5},
        "ingest": {"flush_interval_ms": 50, "retry_delay_s": 0.2},
        "storage": {"export_interval_s": 0},
        # The retriever's version 0 would index all 40,194 sites on first use.
        "gateway": {"tasks": ["parser"]},
        "metrics": {"port": 0},  # tests run side by side: no fixed port
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return Settings(**base)


@pytest.fixture
def settings(tmp_path: Path, nats_server: EmbeddedNats) -> Settings:
    return make_settings(tmp_path / "data", nats_server.url)


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], timeout: float = 20.0, interval: float = 0.05
) -> None:
    """Wait until ``check()`` is true; fail the test with a clear message otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(
                f"condition not met within {timeout} s: {getattr(check, '__name__', check)}"
            )
        await asyncio.sleep(interval)


class RunningDaemon:
    """The daemon as an asyncio task, with a client connection beside it."""

    def __init__(self, daemon: Daemon, task: asyncio.Task[int], nc: nats.NATS) -> None:
        self.daemon = daemon
        self.task = task
        self.nc = nc
        self.js = nc.jetstream()

    async def status(self) -> dict[str, Any]:
        reply = await self.nc.request("kaizen.admin.status", b"{}", timeout=5)
        return json.loads(reply.data)

    async def sql(self, query: str) -> dict[str, Any]:
        reply = await self.nc.request(
            "kaizen.admin.sql", json.dumps({"sql": query}).encode(), timeout=5
        )
        return json.loads(reply.data)

    async def scalar(self, query: str) -> Any:
        result = await self.sql(query)
        assert "error" not in result, result
        return result["rows"][0][0]

    async def stop(self) -> int:
        self.daemon.request_stop("test")
        return await asyncio.wait_for(self.task, 30)


@asynccontextmanager
async def run_daemon(settings: Settings) -> AsyncIterator[RunningDaemon]:
    """Run the daemon in-process until the block ends; wait until it answers requests."""
    daemon = Daemon(settings)
    task = asyncio.create_task(daemon.run())
    nc = await nats.connect(settings.nats.url)
    running = RunningDaemon(daemon, task, nc)

    async def answers() -> bool:
        if task.done():
            task.result()  # surface a start-up error
        if not settings.runtime_file.exists():  # written once every part has started
            return False
        try:
            await running.status()
        except Exception:  # noqa: BLE001 - not ready yet
            return False
        return True

    try:
        await eventually(answers)
        yield running
    finally:
        if not task.done():
            await running.stop()
        await nc.close()


async def rows(daemon: RunningDaemon, query: str) -> list[dict[str, Any]]:
    """The rows of ``query``, answered by the running daemon, as dicts."""
    result = await daemon.sql(query)
    assert "error" not in result, result
    return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]


async def kaizend(settings: Settings, *args: str, ok: bool = True) -> str:
    """The command line against the in-process daemon (without blocking its event loop):
    its stdout when it succeeds (``ok``), its stderr when it must fail."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kaizend.daemon", *args,
        env={**os.environ, "PYTHONPATH": str(ROOT), "KAIZEND_NATS__URL": settings.nats.url,
             "KAIZEND_DAEMON__DATA_DIR": str(settings.daemon.data_dir), "COLUMNS": "300"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    if ok:
        assert proc.returncode == 0, err.decode()
        return out.decode()
    assert proc.returncode != 0, out.decode()
    return err.decode()


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[RunningDaemon]:
    async with run_daemon(settings) as daemon:
        yield daemon


def event(kind: str, event_id: str, query_id: str = "q1", **fields: Any) -> dict[str, Any]:
    """A valid event of ``kind`` with ``fields`` overriding the defaults."""
    base: dict[str, Any] = {
        "event_id": event_id,
        "query_id": query_id,
        "ts": "2026-11-23T10:00:00Z",
    }
    if kind == "query":
        base |= {
            "task": "parser",
            "text": "wind sites over 100kw in berkshire",
            "model_version": "v0",
            "output": {"technology": "Wind"},
            "latency_ms": 12.0,
        }
    elif kind == "feedback":
        base |= {"rating": 5}
    elif kind == "correction":
        base |= {"corrected_output": {"technology": "Wind", "capacity_min_kw": 100}}
    return base | fields


def outgoing(kind: str, payload: dict[str, Any], prefix: str = "kaizen.events") -> Outgoing:
    return Outgoing(f"{prefix}.{kind}", json.dumps(payload).encode(), payload.get("event_id"))


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


MEMORISE = {
    "id": "berks",
    "text": "wind sites over 100kw in berkshire",
    "expected": {"technology": "Wind", "capacity_min_kw": 100, "location": "Berkshire",
                 "postcode_patterns": ["RG", "SL"]},
}  # fmt: skip


@pytest.fixture(scope="session")
def memorised(gguf_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny parser version (LoRA on the tiny Llama, converted from its GGUF file like the
    packaged base) that has learnt one question by heart: `W >100 @Berkshire`."""
    from kaizend.models.llm.config import LlmTrainingConfig
    from kaizend.models.llm.train import train_llm

    config = LlmTrainingConfig(
        lora_rank=16,
        lora_alpha=32.0,
        lora_dropout=0.0,
        batch_size=1,
        max_steps=40,
        learning_rate=1e-2,
        warmup_ratio=0.0,
        checkpoint_every=100,
    )
    out = tmp_path_factory.mktemp("memorised") / "parser-v1"
    return train_llm(FitCodec(), [MEMORISE], base_path=gguf_base, out_dir=out, config=config)


@pytest.fixture(scope="session")
def gguf_base(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama laid out like a base converted from a GGUF file (`convert_gguf`): the
    Hugging Face directory plus the marker naming its source, a real GGUF of its weights."""
    import shutil

    import gguf
    from kaizend.models.llm.gguf_merge import HF_TO_GGUF, permute
    from safetensors.numpy import load_file

    config = json.loads((tiny_base / "config.json").read_text())
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    root = tmp_path_factory.mktemp("gguf-base")
    gguf_file = root / "tiny-llama.F32.gguf"
    # What llama.cpp's converter writes for a Llama, less the tokenizer: the same
    # hyperparameters, GGUF tensor names, and query/key rows permuted for its rotary layout.
    writer = gguf.GGUFWriter(str(gguf_file), "llama")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
             "output_norm.weight"}  # fmt: skip
    for name, array in sorted(load_file(str(tiny_base / "model.safetensors")).items()):
        if name in names:
            writer.add_tensor(names[name], array)
            continue
        layer, module = name.removeprefix("model.layers.").removesuffix(".weight").split(".", 1)
        if module == "self_attn.q_proj":
            array = permute(array, heads, heads)
        elif module == "self_attn.k_proj":
            array = permute(array, heads, kv_heads)
        short = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
        writer.add_tensor(f"blk.{layer}.{short.get(module) or HF_TO_GGUF[module]}.weight", array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    base = shutil.copytree(tiny_base, root / "base")
    (base / "kaizend_base.json").write_text(
        json.dumps({"source": str(gguf_file), "source_bytes": gguf_file.stat().st_size})
    )
    return base
