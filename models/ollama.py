"""The connection to the configured Ollama server (``[ollama]``), shared by publishing and serving.

A client per use (an `ollama.Client`, one httpx connection pool, not shared between threads),
the model name a version gets there, and the translation of the client's failures into
kaizend's errors: `OllamaUnavailable` when the server cannot be reached (naming ``ollama.url``),
`OllamaRefused` when it answered with an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kaizend.core.config import OllamaSettings
from kaizend.core.errors import ConfigError, KaizendError


class OllamaUnavailable(KaizendError, ConnectionError):
    """The Ollama server at ``url`` could not be reached (refused, timed out, wrong address)."""

    def __init__(self, url: str, action: str, cause: str) -> None:
        super().__init__(
            f"cannot reach Ollama at {url} (ollama.url) to {action}: {cause}; start the server "
            "there (`ollama serve`), fix ollama.url, or leave it empty to run without Ollama"
        )
        self.url = url
        self.action = action


class OllamaRefused(KaizendError, RuntimeError):
    """The Ollama server answered ``action`` with an error; ``status`` is the HTTP status (-1
    for an error inside a streamed answer)."""

    def __init__(self, url: str, action: str, status: int, error: str, hint: str = "") -> None:
        message = f"Ollama at {url} refused to {action}: {error} (HTTP {status})"
        super().__init__(f"{message}; {hint}" if hint else message)
        self.url = url
        self.action = action
        self.status = status
        self.error = error


def model_name(settings: OllamaSettings, version_id: str) -> str:
    """The Ollama model a version is published as: ``<ollama.model>:<version id>``."""
    return f"{settings.model}:{version_id}"


def client(settings: OllamaSettings, *, timeout_s: float | None = None) -> Any:
    """An `ollama.Client` for ``ollama.url`` (`ConfigError` when it is empty)."""
    if not settings.url:
        raise ConfigError("ollama.url", "ollama.url is empty: set it to the Ollama server's URL")
    import ollama

    return ollama.Client(host=settings.url, timeout=timeout_s or settings.timeout_s)


@contextmanager
def translated(settings: OllamaSettings, action: str, hint: str = "") -> Iterator[None]:
    """Turn the ollama client's and httpx's failures inside the block into kaizend's errors."""
    import httpx
    import ollama

    try:
        yield
    except ollama.ResponseError as err:
        raise OllamaRefused(settings.url, action, err.status_code, err.error, hint) from err
    except (ConnectionError, httpx.TransportError) as err:
        # The client turns a refused connection into a bare ConnectionError with a generic
        # message; timeouts and broken connections arrive as httpx errors.
        cause = type(err).__name__ if isinstance(err, httpx.TimeoutException) else str(err)
        raise OllamaUnavailable(settings.url, action, cause or type(err).__name__) from err
