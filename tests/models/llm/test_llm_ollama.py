"""Publishing a real (tiny) parser version to Ollama and parsing through it, against the
recording stand-in of `tests.ollama_fake`: the exact calls, digests and requests."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from kaizend.core.config import Settings
from kaizend.models.fit import rules
from kaizend.models.fit.parser import trained_codec
from kaizend.models.fit.prompt import (
    FitCodec,
    build_prompt,
    encode_target,
    rule_hint,
    target_json_schema,
)
from kaizend.models.fit.schema import to_compact_dict
from kaizend.models.llm.gguf_merge import merge_adapter
from kaizend.models.llm.ollama import OllamaPredictor, PublishError, publish_version
from kaizend.models.llm.version import LlmVersion
from kaizend.models.ollama import OllamaRefused, OllamaUnavailable
from kaizend.storage.events import EventStore
from kaizend.storage.registry import Registry, VersionRecord

from tests.ollama_fake import OllamaFake

QUESTION = "wind sites over 100kw in berkshire"
EXPECTED = {"technology": "Wind", "capacity_min_kw": 100, "location": "Berkshire",
            "postcode_patterns": ["RG", "SL"]}  # fmt: skip


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def registered(tmp_path: Path, artifact: Path | None) -> VersionRecord:
    store = EventStore(tmp_path / "k.duckdb")
    with store.cursor() as con:
        registry = Registry(con)
        registry.ensure_initial_champion("parser", base_model="rules", reason="v0")
        if artifact is None:
            return registry.get("parser-v0")
        return registry.register(
            "parser", base_model="tiny", reason="trained", artifact_path=str(artifact)
        )


@pytest.fixture
def fake() -> Iterator[OllamaFake]:
    with OllamaFake(answer=encode_target(EXPECTED)) as server:
        yield server


def settings_for(url: str, **ollama_settings: object) -> Settings:
    return Settings(ollama={"url": url, **ollama_settings})


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_publishing_uploads_the_base_gguf_and_the_adapter_then_creates_the_model(
    fake: OllamaFake, memorised: LlmVersion, tmp_path: Path
) -> None:
    record = registered(tmp_path, memorised.path)
    publication = publish_version(settings_for(fake.url), record, FitCodec())

    gguf_file = Path(json.loads((memorised.base_path / "kaizend_base.json").read_text())["source"])
    adapter = memorised.adapter_path
    expected_blobs = {
        gguf_file.name: sha256(gguf_file),
        "adapter_model.safetensors": sha256(adapter / "adapter_model.safetensors"),
        "adapter_config.json": sha256(adapter / "adapter_config.json"),
    }
    uploads = fake.uploads()
    assert [call.body["digest"] for call in uploads] == list(expected_blobs.values())
    assert all(call.body["sha256"] == call.body["digest"] for call in uploads)
    assert [call.status for call in uploads] == [201, 201, 201]
    assert uploads[0].body["size"] == gguf_file.stat().st_size

    [create] = fake.requests("/api/create")
    assert create == {
        "model": "kaizend-parser:parser-v1",
        "stream": True,
        "files": {gguf_file.name: expected_blobs[gguf_file.name]},
        "adapters": {
            "adapter_model.safetensors": expected_blobs["adapter_model.safetensors"],
            "adapter_config.json": expected_blobs["adapter_config.json"],
        },
        "template": "{{ .Prompt }}",
        "parameters": {"temperature": 0.0, "num_predict": 40, "stop": ["\n"]},
    }
    assert publication.model == "kaizend-parser:parser-v1"
    assert publication.blobs == expected_blobs
    assert "kaizend-parser:parser-v1" in fake.models

    # Published again (a retry): blobs already there are answered 200, the model replaced.
    publish_version(settings_for(fake.url), record, FitCodec())
    assert [call.status for call in fake.uploads()[3:]] == [200, 200, 200]
    assert len(fake.requests("/api/create")) == 2


def test_a_base_already_on_the_server_is_named_instead_of_uploaded(
    fake: OllamaFake, memorised: LlmVersion, tmp_path: Path
) -> None:
    fake.models["smollm2:135m"] = {}
    settings = settings_for(fake.url, model="fit/parser", base_model="smollm2:135m",
                            options={"num_predict": 12, "temperature": 0.1})  # fmt: skip
    publication = publish_version(settings, registered(tmp_path, memorised.path), FitCodec())

    assert [Path(name).suffix for name in publication.blobs] == [".safetensors", ".json"]
    [create] = fake.requests("/api/create")
    assert create["from"] == "smollm2:135m" and "files" not in create
    assert create["model"] == "fit/parser:parser-v1"
    assert set(create["adapters"]) == {"adapter_model.safetensors", "adapter_config.json"}
    assert create["parameters"] == {"temperature": 0.1, "num_predict": 12, "stop": ["\n"]}


def test_merged_publication_uploads_one_gguf_that_an_ollama_without_adapters_accepts(
    memorised: LlmVersion, tmp_path: Path
) -> None:
    expected = merge_adapter(
        Path(json.loads((memorised.base_path / "kaizend_base.json").read_text())["source"]),
        memorised.adapter_path,
        tmp_path / "expected.gguf",
    )
    settings = Settings(daemon={"data_dir": tmp_path / "data"},
                        ollama={"url": "", "publish": "merged"})  # fmt: skip
    with OllamaFake(refuse_adapters=True) as fake:  # like Ollama 0.34.1 and later
        settings = settings.model_copy(
            update={"ollama": settings.ollama.model_copy(update={"url": fake.url})}
        )
        publication = publish_version(settings, registered(tmp_path, memorised.path), FitCodec())

    [upload] = fake.uploads()
    assert upload.body["digest"] == sha256(expected) and upload.status == 201
    [create] = fake.requests("/api/create")
    assert create["files"] == {"parser-v1.gguf": sha256(expected)}
    assert "adapters" not in create and "from" not in create
    assert create["template"] == "{{ .Prompt }}"
    assert publication.blobs == {"parser-v1.gguf": sha256(expected)}
    assert list((tmp_path / "data" / "tmp").iterdir()) == []  # the merged file is not kept

    with pytest.raises(PublishError, match="base_model"):
        publish_version(
            settings_for(fake.url, publish="merged", base_model="smollm2:135m"),
            registered(tmp_path / "b", memorised.path),
            FitCodec(),
        )


def test_the_fake_checks_digests_like_ollama(fake: OllamaFake, tmp_path: Path) -> None:
    """What the publishing tests rely on: a body whose sha256 is not its digest is refused,
    and so is a create that names a blob never uploaded."""
    body = b"not the weights"
    wrong = "sha256:" + hashlib.sha256(b"other bytes").hexdigest()
    reply = httpx.post(f"{fake.url}/api/blobs/{wrong}", content=body)
    assert reply.status_code == 400 and "digest mismatch" in reply.json()["error"]
    assert httpx.head(f"{fake.url}/api/blobs/{wrong}").status_code == 404
    assert fake.blobs == {}

    client = ollama.Client(host=fake.url)
    path = tmp_path / "blob.bin"
    path.write_bytes(body)
    digest = client.create_blob(path)
    assert httpx.head(f"{fake.url}/api/blobs/{digest}").status_code == 200
    with pytest.raises(ollama.ResponseError) as refused:
        client.create(model="m:v", files={"x.gguf": wrong})
    assert refused.value.status_code == 400 and "blob not found" in refused.value.error


def test_an_ollama_that_refuses_adapters_fails_the_publication_with_the_reason(
    memorised: LlmVersion, tmp_path: Path
) -> None:
    with OllamaFake(refuse_adapters=True) as fake:
        with pytest.raises(OllamaRefused) as refused:
            publish_version(
                settings_for(fake.url), registered(tmp_path, memorised.path), FitCodec()
            )
    assert refused.value.status == 400
    assert "LoRA adapters are no longer supported" in str(refused.value)
    assert 'ollama.publish = "merged"' in str(refused.value)  # what to do about it
    assert fake.models == {}


def test_publishing_without_a_reachable_server_names_ollama_url(
    memorised: LlmVersion, tmp_path: Path
) -> None:
    url = closed_port_url()
    with pytest.raises(OllamaUnavailable) as unavailable:
        publish_version(settings_for(url), registered(tmp_path, memorised.path), FitCodec())
    assert isinstance(unavailable.value, ConnectionError)
    assert url in str(unavailable.value) and "ollama.url" in str(unavailable.value)


def test_versions_that_cannot_be_published_say_why(
    fake: OllamaFake, memorised: LlmVersion, tiny_base: Path, tmp_path: Path
) -> None:
    with pytest.raises(PublishError, match="a built-in version"):
        publish_version(settings_for(fake.url), registered(tmp_path / "a", None), FitCodec())

    # A version on a base that was never a GGUF file: nothing to upload as the base.
    plain = shutil.copytree(memorised.path, tmp_path / "parser-v1")
    base = json.loads((plain / "base.json").read_text())
    (plain / "base.json").write_text(json.dumps({**base, "path": str(tiny_base)}))
    with pytest.raises(PublishError, match="ollama.base_model"):
        publish_version(settings_for(fake.url), registered(tmp_path / "b", plain), FitCodec())
    assert fake.calls == []


def test_parsing_sends_the_trained_prompt_raw_and_decodes_like_in_process(
    fake: OllamaFake, memorised: LlmVersion, tmp_path: Path
) -> None:
    publish_version(settings_for(fake.url), registered(tmp_path, memorised.path), FitCodec())
    parser = OllamaPredictor(
        settings_for(fake.url).ollama,
        "kaizend-parser:" + "parser-v1",
        trained_codec(memorised.path),
    )
    result = parser.answer(QUESTION)

    assert not result.fallback_used
    assert result.output == EXPECTED
    assert result.raw == encode_target(EXPECTED) and parser.name == "kaizend-parser:parser-v1"
    [generate] = fake.requests("/api/generate")
    assert generate == {
        "model": "kaizend-parser:parser-v1",
        # The version was trained with rule hints: the prompt carries the rules' answer.
        "prompt": build_prompt(QUESTION, rule_hint(QUESTION, "slots")),
        "raw": True,
        "stream": False,
        "options": {"temperature": 0.0, "num_predict": 40, "stop": ["\n"]},
        "keep_alive": "30m",
    }  # no "format": a slot code is not JSON


def test_a_json_version_asks_ollama_for_json(fake: OllamaFake) -> None:
    fake.models["kaizend-parser:parser-v7"] = {}
    fake.answer = encode_target(EXPECTED, "json")
    config = settings_for(fake.url, keep_alive="-1").ollama
    parser = OllamaPredictor(config, "kaizend-parser:parser-v7", FitCodec("json", with_hint=False))
    result = parser.answer(QUESTION)

    assert not result.fallback_used and result.output == EXPECTED
    [generate] = fake.requests("/api/generate")
    assert generate["format"] == target_json_schema()
    assert generate["prompt"] == build_prompt(QUESTION)  # no rule hint for this version
    assert generate["options"]["num_predict"] == 160 and generate["keep_alive"] == "-1"


def test_bad_model_output_falls_back_to_the_rule_parser(fake: OllamaFake) -> None:
    fake.models["kaizend-parser:parser-v1"] = {}
    fake.answer = " W >lots @Atlantis"
    parser = OllamaPredictor(
        settings_for(fake.url).ollama,
        "kaizend-parser:parser-v1",
        FitCodec("slots", with_hint=False),
    )
    text = "compare wind and solar in Yorkshire"
    result = parser.answer(text)

    assert result.fallback_used
    assert result.output == to_compact_dict(rules.parse(text))
    assert result.raw == " W >lots @Atlantis" and result.problems


def test_ollama_failures_while_parsing_are_kaizend_errors(fake: OllamaFake) -> None:
    never_published = OllamaPredictor(
        settings_for(fake.url).ollama,
        "kaizend-parser:parser-v9",
        FitCodec("slots", with_hint=False),
    )
    with pytest.raises(OllamaRefused) as refused:
        never_published.answer(QUESTION)
    assert refused.value.status == 404 and "parser-v9" in str(refused.value)

    url = closed_port_url()
    unreachable = OllamaPredictor(
        settings_for(url).ollama, "kaizend-parser:parser-v1", FitCodec("slots", with_hint=False)
    )
    with pytest.raises(OllamaUnavailable, match="ollama.url") as unavailable:
        unreachable.answer(QUESTION)
    assert url in str(unavailable.value)
