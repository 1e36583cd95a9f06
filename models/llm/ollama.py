"""An LLM version on an Ollama server: publishing it as a model, and answering through it.

**Publishing** (`publish_version`, called after a promotion) creates the Ollama model
``<ollama.model>:<version id>`` from the base and the version's LoRA adapter, through the
ollama Python client:

1. ``create_blob`` for each file (``POST /api/blobs/sha256:<digest>``; the client hashes the
   file and the server checks the digest): the base GGUF file the version's base was converted
   from (unless ``ollama.base_model`` names a model already on the server), then the adapter's
   ``adapter_model.safetensors`` and ``adapter_config.json``;
2. ``create`` (``POST /api/create``) with ``files`` = {GGUF name: digest} or ``from`` = the
   configured base model, ``adapters`` = {adapter file name: digest}, the template
   ``{{ .Prompt }}`` and the parameters temperature, num_predict and stop at a line break.

Ollama converts a safetensors LoRA adapter only for the Llama, Mistral and Gemma families
(docs/import.md of ollama/ollama); SmolLM2 is a Llama. Ollama 0.34.1 and later refuse every
adapter ("LoRA adapters are no longer supported"; `OllamaRefused` says what to do): with
``ollama.publish = "merged"`` kaizend merges the adapter into the base GGUF itself
(`models.llm.gguf_merge`) and uploads that one file as ``files``, with no ``adapters``.

**Serving** (`OllamaPredictor`) sends the exact prompt the version was trained on (its
codec's `prompt`) with ``raw`` true, so no chat template wraps it, and decodes the answer
exactly like the in-process predictor (`models.llm.serve.answer_result`): invalid output
falls back to the codec's fallback. For codecs whose answers are JSON the codec's JSON
Schema goes as ``format``, so Ollama's structured outputs hold sampling to it; a target that
is not JSON (the FIT slot code, ``W >100 @Berkshire``) generates unconstrained and stops at
the end of the line.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaizend.core.config import OllamaSettings, Settings
from kaizend.core.errors import KaizendError
from kaizend.models.llm import base as base_model
from kaizend.models.llm.codec import Codec
from kaizend.models.llm.gguf_merge import merge_adapter
from kaizend.models.llm.serve import Answer, Predicts, answer_result
from kaizend.models.llm.version import LlmVersion
from kaizend.models.ollama import OllamaRefused, model_name, translated
from kaizend.models.ollama import client as ollama_client

if TYPE_CHECKING:
    from kaizend.storage.registry import VersionRecord

log = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
"""What Ollama reads of a peft adapter directory."""

TEMPLATE = "{{ .Prompt }}"
"""The published model's template: the prompt passes through unchanged, so that even a plain
``ollama run`` (without raw) shows the model what it was trained on."""

STOP = ("\n",)
"""An answer is one line (a slot code or compact JSON), then the end token."""

ADAPTERS_REMOVED_HINT = (
    'Ollama 0.34.1 and later no longer import LoRA adapters: set ollama.publish = "merged" '
    "to upload one GGUF file with the adapter merged in, or use an Ollama older than 0.34.1"
)


class PublishError(KaizendError, ValueError):
    """A version cannot be published to Ollama as it is; ``version_id`` names it."""

    def __init__(self, version_id: str, message: str) -> None:
        super().__init__(f"cannot publish {version_id} to Ollama: {message}")
        self.version_id = version_id


@dataclass(frozen=True)
class Publication:
    """A version created on the Ollama server."""

    model: str
    """The Ollama model name, ``<ollama.model>:<version id>``."""
    blobs: dict[str, str]
    """Every uploaded file's name -> its ``sha256:`` digest."""
    seconds: float


def _num_predict(settings: OllamaSettings, codec: Codec) -> int:
    return settings.options.num_predict or codec.max_new_tokens


def _upload(client: Any, settings: OllamaSettings, path: Path) -> str:
    started = time.perf_counter()
    with translated(settings, f"upload {path.name}"):
        digest = client.create_blob(path)
    log.info(
        "ollama blob uploaded: %s (%d bytes) as %s in %.1f s",
        path.name, path.stat().st_size, digest, time.perf_counter() - started,
    )  # fmt: skip
    return digest


def _publishable(config: OllamaSettings, record: VersionRecord) -> LlmVersion:
    """The version directory of `record`, checked for what publishing it needs."""
    version_id = record.version_id
    if record.artifact_path is None:
        raise PublishError(version_id, "it has no model directory (a built-in version)")
    version = LlmVersion.load(Path(record.artifact_path))
    for name in ADAPTER_FILES:
        if not (version.adapter_path / name).is_file():
            raise PublishError(
                version_id, f"{version.adapter_path / name} is missing; train it again"
            )
    if config.publish == "merged" and config.base_model:
        raise PublishError(
            version_id,
            'ollama.publish = "merged" merges into the base\'s GGUF file; leave ollama.base_model '
            "empty",
        )
    if version.metrics.get("device") == "cuda" and version.config.quantize_4bit:
        log.warning(
            "%s was trained as QLoRA on a 4-bit base; Ollama applies it to its own weights, "
            "and its import docs advise non-quantized adapters: check its answers",
            version_id,
        )
    return version


def _create(client: Any, config: OllamaSettings, request: dict[str, Any]) -> None:
    name = request["model"]
    hint = ADAPTERS_REMOVED_HINT if "adapters" in request else ""
    with translated(config, f"create {name}", hint):
        last = None
        for progress in client.create(**request, stream=True):
            last = progress.status
            log.info("ollama create %s: %s", name, last)
    if last != "success":
        raise OllamaRefused(config.url, f"create {name}", -1, f"the last status was {last!r}")


def publish_version(settings: Settings, record: VersionRecord, codec: Codec) -> Publication:
    """Create the Ollama model of the LLM version `record` (from the registry), trained
    with `codec`.

    Blocking (uploads can take minutes) and thread-safe: each call has its own client. Raises
    `PublishError` for a version that cannot be published (a built-in one, a base without
    a GGUF file and no ``ollama.base_model``), `OllamaUnavailable` when the server cannot be
    reached and `OllamaRefused` when it refuses a request. Creating a model that exists
    replaces it, so a failed or repeated publication can simply be run again.
    """
    config = settings.ollama
    started = time.perf_counter()
    version_id = record.version_id
    version = _publishable(config, record)
    base_gguf = None if config.base_model else base_model.source_gguf(version.base_path)
    if base_gguf is None and not config.base_model:
        raise PublishError(
            version_id,
            f"its base {version.base_path} was not converted from a GGUF file, so there is no "
            "file to upload; import the base into Ollama and set ollama.base_model to its name",
        )
    name = model_name(config, version_id)
    log.info("ollama publication started: %s to %s (%s)", name, config.url, config.publish)
    with ollama_client(config, timeout_s=config.publish_timeout_s) as client:
        files: dict[str, str] = {}
        adapters: dict[str, str] = {}
        if config.publish == "merged":
            assert base_gguf is not None  # _publishable refused base_model with merged
            # Under the data directory, not /tmp: a merged 8B model is gigabytes.
            scratch_root = settings.path(Path("tmp"))
            scratch_root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="ollama-", dir=scratch_root) as scratch:
                merged = merge_adapter(
                    base_gguf, version.adapter_path, Path(scratch) / f"{version_id}.gguf"
                )
                files[merged.name] = _upload(client, config, merged)
        else:
            if base_gguf is not None:
                files[base_gguf.name] = _upload(client, config, base_gguf)
            for file_name in ADAPTER_FILES:
                adapters[file_name] = _upload(client, config, version.adapter_path / file_name)
        request: dict[str, Any] = {
            "model": name,
            "template": TEMPLATE,
            "parameters": {
                "temperature": config.options.temperature,
                "num_predict": _num_predict(config, codec),
                "stop": list(STOP),
            },
        }
        if files:
            request["files"] = files
        else:
            request["from_"] = config.base_model
        if adapters:
            request["adapters"] = adapters
        _create(client, config, request)
    seconds = time.perf_counter() - started
    log.info("ollama publication finished: %s in %.1f s", name, seconds)
    return Publication(name, {**files, **adapters}, seconds)


class OllamaPredictor(Predicts):
    """A published LLM version answering through Ollama's generate endpoint.

    The same `Answerer` protocol as `models.llm.serve.ModelPredictor`; the prompt, the
    decoding and the fallback are its codec's. Each thread gets its own client.
    """

    def __init__(self, settings: OllamaSettings, model: str, codec: Codec) -> None:
        self.settings = settings
        self.name = model
        self.codec = codec
        self._local = threading.local()

    def request(self, text: str) -> dict[str, Any]:
        """The generate request for one question (keyword arguments of `Client.generate`)."""
        request: dict[str, Any] = {
            "model": self.name,
            "prompt": self.codec.prompt(text),
            "raw": True,
            "stream": False,
            "options": {
                "temperature": self.settings.options.temperature,
                "num_predict": _num_predict(self.settings, self.codec),
                "stop": list(STOP),
            },
            "keep_alive": self.settings.keep_alive,
        }
        schema = self.codec.json_schema()
        if schema is not None:
            request["format"] = schema
        return request

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = ollama_client(self.settings)
        return client

    def answer(self, text: str) -> Answer:
        """Generate through Ollama, then decode and validate; an invalid answer falls back.
        `OllamaUnavailable` or `OllamaRefused` when Ollama itself fails."""
        started = time.perf_counter()
        with translated(self.settings, f"generate with {self.name}"):
            response = self._client().generate(**self.request(text))
        return answer_result(
            text, response.response or "", self.codec, started, response.eval_count or 0
        )
