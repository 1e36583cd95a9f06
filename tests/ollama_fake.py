"""A local stand-in for an Ollama server, for the tests: the endpoints kaizend uses, checked
the way Ollama checks them, and a record of every call.

No Ollama binary can be installed here, so this small HTTP server (stdlib ``http.server`` on a
free loopback port) answers the real ollama Python client:

- ``HEAD /api/blobs/sha256:<digest>``: 200 when the blob is stored, else 404;
- ``POST /api/blobs/sha256:<digest>``: stores the body; 400 when its sha256 is not the digest
  in the path (Ollama's "digest mismatch"), 201 when stored, 200 when it already was;
- ``POST /api/create``: 400 unless every digest it names in ``files`` and ``adapters`` was
  uploaded, and for a ``from`` that is not a model here; with ``refuse_adapters`` (Ollama 0.34.1
  and later) any ``adapters`` is refused. Then it streams status lines as Ollama does (or
  answers once with ``stream`` false) and the model exists;
- ``POST /api/generate``: the configured answer for the prompt (``answers``, else ``answer``),
  in one object (kaizend never asks for a streamed answer); 404 for a model never created;
- ``GET /api/version`` and ``GET /api/tags``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BLOB_PREFIX = "/api/blobs/"
MODEL_NAME = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9._-]+)*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?"
)
"""namespace/model:tag, as Ollama's docs/api.md describes model names."""


@dataclass
class Call:
    """One request: method, path, the JSON body (a blob upload: claimed digest, real sha256
    and size of the body) and the status answered."""

    method: str
    path: str
    body: dict[str, Any] | None
    status: int = 0


@dataclass
class OllamaFake:
    """Run with ``with OllamaFake() as fake:``; ``fake.url`` is the ``ollama.url`` to use."""

    answer: str = ""
    answers: dict[str, str] = field(default_factory=dict)
    refuse_adapters: bool = False
    version: str = "0.12.10"
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Models on the server: name -> the create request that made it (preload for ``from``)."""
    blobs: dict[str, bytes] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest's output clean
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                fake._handle(self, "HEAD")

            def do_GET(self) -> None:  # noqa: N802
                fake._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> OllamaFake:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def requests(self, path: str) -> list[dict[str, Any]]:
        """The JSON bodies of every call to ``path``, in order."""
        return [call.body or {} for call in self.calls if call.path == path]

    def uploads(self) -> list[Call]:
        """Every blob upload (POST), in order."""
        return [c for c in self.calls if c.method == "POST" and c.path.startswith(BLOB_PREFIX)]

    # --- request handling -------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = handler.path
        route: Callable[..., None] | None = None
        if path.startswith(BLOB_PREFIX):
            route = self._blob_head if method == "HEAD" else self._blob_post
        else:
            route = {
                ("POST", "/api/create"): self._create,
                ("POST", "/api/generate"): self._generate,
                ("GET", "/api/version"): self._version,
                ("GET", "/api/tags"): self._tags,
            }.get((method, path))
        if route is None:
            call = Call(method, path, None)
            self._record(call)
            _reply(handler, call, 404, {"error": f"{method} {path} not found"})
            return
        route(handler, Call(method, path, None))

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _blob_head(self, handler: BaseHTTPRequestHandler, call: Call) -> None:
        digest = call.path.removeprefix(BLOB_PREFIX)
        call.body = {"digest": digest}
        self._record(call)
        _reply(handler, call, 200 if digest in self.blobs else 404, None)

    def _blob_post(self, handler: BaseHTTPRequestHandler, call: Call) -> None:
        claimed = call.path.removeprefix(BLOB_PREFIX)
        data = _read_body(handler)
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        call.body = {"digest": claimed, "sha256": actual, "size": len(data)}
        self._record(call)
        if claimed in self.blobs:
            _reply(handler, call, 200, None)
        elif actual != claimed:
            error = f'digest mismatch, expected "{claimed}", got "{actual}"'
            _reply(handler, call, 400, {"error": error})
        else:
            with self._lock:
                self.blobs[claimed] = data
            _reply(handler, call, 201, None)

    def _create(self, handler: BaseHTTPRequestHandler, call: Call) -> None:
        body = json.loads(_read_body(handler))
        call.body = body
        self._record(call)
        name = body.get("model") or ""
        files: dict[str, str] = body.get("files") or {}
        adapters: dict[str, str] = body.get("adapters") or {}
        problem = None
        if not MODEL_NAME.fullmatch(name):
            problem = "invalid model name"
        elif adapters and self.refuse_adapters:
            problem = "LoRA adapters are no longer supported"
        elif not files and not body.get("from"):
            problem = "neither 'from' or 'files' was specified"
        elif body.get("from") and body["from"] not in self.models:
            problem = f"model '{body['from']}' not found"
        else:
            for file_name, digest in {**files, **adapters}.items():
                if digest not in self.blobs:
                    problem = f"blob not found for {file_name} (digest {digest})"
                    break
        if problem is not None:
            _reply(handler, call, 400, {"error": problem})
            return
        statuses = ["parsing GGUF" if files else f"using model {body['from']}"]
        if adapters:
            statuses.append("converting adapter")
        statuses += [f"using layer {digest}" for digest in {**files, **adapters}.values()]
        statuses += ["creating new layer sha256:template", "writing manifest", "success"]
        with self._lock:
            self.models[name] = body
        if body.get("stream") is False:
            _reply(handler, call, 200, {"status": "success"})
        else:
            _stream(handler, call, [{"status": status} for status in statuses])

    def _generate(self, handler: BaseHTTPRequestHandler, call: Call) -> None:
        body = json.loads(_read_body(handler))
        call.body = body
        self._record(call)
        model = body.get("model", "")
        if model not in self.models:
            _reply(handler, call, 404, {"error": f"model '{model}' not found"})
            return
        text = self.answers.get(body.get("prompt", ""), self.answer)
        _reply(handler, call, 200, {
            "model": model, "created_at": "2026-11-23T10:00:00Z", "response": text, "done": True,
            "done_reason": "stop", "eval_count": max(1, len(text.split())),
        })  # fmt: skip

    def _version(self, handler: BaseHTTPRequestHandler, call: Call) -> None:
        self._record(call)
        _reply(handler, call, 200, {"version": self.version})

    def _tags(self, handler: BaseHTTPRequestHandler, call: Call) -> None:
        self._record(call)
        _reply(handler, call, 200, {"models": [{"model": n, "name": n} for n in self.models]})


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def _reply(handler: BaseHTTPRequestHandler, call: Call, status: int, body: Any) -> None:
    call.status = status
    data = b"" if body is None else json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json; charset=utf-8")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)


def _stream(handler: BaseHTTPRequestHandler, call: Call, lines: list[dict[str, Any]]) -> None:
    """NDJSON, one object per line, the body ending when the connection closes (HTTP/1.0)."""
    call.status = 200
    handler.send_response(200)
    handler.send_header("Content-Type", "application/x-ndjson")
    handler.end_headers()
    for line in lines:
        handler.wfile.write(json.dumps(line).encode() + b"\n")
        handler.wfile.flush()
