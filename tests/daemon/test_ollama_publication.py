"""A promotion by the experiment loop publishes the new champion to Ollama, in the background;
a failed publication is logged and leaves the promotion in place. Real DuckDB file, real
routing bucket on a real nats-server, a real (tiny) version directory, the recording fake
Ollama."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import nats
import pytest
from kaizend.daemon.experiments import ExperimentLoop
from kaizend.handlers.routing import Routing, routing_bucket
from kaizend.models.llm.version import LlmVersion
from kaizend.storage.events import EventStore
from kaizend.storage.registry import Registry

from tests.conftest import FIT_TASKS_ENV, eventually, make_settings
from tests.daemon.test_experiments import traffic
from tests.ollama_fake import OllamaFake


async def promote(tmp_path: Path, nats_url: str, ollama_url: str, version: LlmVersion) -> str:
    """Run an experiment that parser-v1 (`version`) wins; the champion at the end."""
    settings = make_settings(
        tmp_path / "data", nats_url, experiments={"min_units": 300, "attribution_s": 3600},
        ollama={"url": ollama_url},
    )  # fmt: skip
    store = EventStore(tmp_path / "k.duckdb")
    with store.cursor() as con:
        registry = Registry(con)
        registry.ensure_initial_champion("parser", base_model="rules", reason="v0")
        registry.register(
            "parser", base_model="tiny", reason="trained", artifact_path=str(version.path)
        )
        registry.make_challenger("parser-v1", "passed the gate")
    nc = await nats.connect(nats_url)
    try:
        kv = await routing_bucket(nc.jetstream(), create=True)
        loop = ExperimentLoop(settings, store, kv)
        await loop.sync_routing(["parser"])
        rng = random.Random(7)
        for _ in range(30):
            decisions = await loop.tick()
            if any(d.action == "promote" for d in decisions.values()):
                break
            entry = Routing.model_validate_json((await kv.get("parser")).value)
            traffic(store, entry, {"champion": 0.40, "challenger": 0.70}, 600, rng)
    finally:
        await nc.close()
    with store.cursor() as con:
        return Registry(con).alias("parser", "champion")


async def test_a_promoted_parser_is_created_on_ollama(
    tmp_path: Path, nats_server, memorised: LlmVersion
) -> None:
    with OllamaFake() as fake:
        champion = await promote(tmp_path, nats_server.url, fake.url, memorised)
        assert champion == "parser-v1"
        await eventually(lambda: "kaizend-parser:parser-v1" in fake.models)
    [create] = fake.requests("/api/create")
    assert set(create["adapters"]) == {"adapter_model.safetensors", "adapter_config.json"}
    assert len(fake.uploads()) == 3  # base GGUF, adapter weights, adapter config


async def test_a_failed_publication_is_logged_and_the_promotion_stands(
    tmp_path: Path,
    nats_server,
    memorised: LlmVersion,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="kaizend.daemon.ollama")
    with OllamaFake(refuse_adapters=True) as fake:
        champion = await promote(tmp_path, nats_server.url, fake.url, memorised)
        await eventually(lambda: bool(caplog.records))
    assert champion == "parser-v1" and fake.models == {}
    [record] = caplog.records
    assert "kaizend-parser:parser-v1" in record.getMessage()
    assert "the promotion stands" in record.getMessage()
    assert "LoRA adapters are no longer supported" in record.getMessage()


def test_kaizend_ollama_publish_creates_a_registered_version(
    tmp_path: Path, memorised: LlmVersion
) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    store = EventStore(tmp_path / "data" / "kaizend.duckdb")
    with store.cursor() as con:
        registry = Registry(con)
        registry.ensure_initial_champion("parser", base_model="rules", reason="v0")
        registry.register(
            "parser",
            base_model="tiny",
            reason="trained",
            artifact_path=str(memorised.path),
        )
    store.close()
    with OllamaFake() as fake:

        def kaizend(*args: str) -> subprocess.CompletedProcess[str]:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "KAIZEND_OLLAMA__URL": fake.url,
                   "KAIZEND_DAEMON__DATA_DIR": str(tmp_path / "data"), **FIT_TASKS_ENV}  # fmt: skip
            command = [sys.executable, "-m", "kaizend.daemon", "ollama", "publish", *args]
            return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

        done = kaizend("parser-v1")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("kaizend-parser:parser-v1 created in")
        assert "kaizend-parser:parser-v1" in fake.models
        assert len(fake.uploads()) == 3 and done.stdout.count("sha256:") == 3
        rules = kaizend("parser-v0")
        assert rules.returncode == 1 and "no model directory (a built-in version)" in rules.stderr
        missing = kaizend("parser-v9")
        assert missing.returncode == 1 and "no version 'parser-v9'" in missing.stderr
