"""The TypeScript package (clients/typescript) built once per session: its npm packages
installed from the committed package-lock.json (again only when the lock changed), its
sources compiled with tsc. Tests that need it are skipped, saying why, without Node.js."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TYPESCRIPT = ROOT / "clients" / "typescript"
NODE_MAJOR = 20


@dataclass(frozen=True)
class NodePackage:
    node: str
    root: Path


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=TYPESCRIPT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def typescript() -> NodePackage:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(
            f"Node.js {NODE_MAJOR}+ with npm is not installed: the TypeScript producer, the "
            "shared routing vectors in TypeScript and the AsyncAPI validation by @asyncapi/parser "
            "are NOT tested"
        )
    version = _run(node, "--version", timeout=30).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < NODE_MAJOR:
        pytest.skip(f"Node.js {version} is older than {NODE_MAJOR}: the TypeScript tests need it")
    lock = hashlib.sha256((TYPESCRIPT / "package-lock.json").read_bytes()).hexdigest()
    stamp = TYPESCRIPT / "node_modules" / ".kaizend-lock-sha256"
    if not stamp.is_file() or stamp.read_text() != lock:
        installed = _run(npm, "ci", "--no-audit", "--no-fund", timeout=600)
        if installed.returncode != 0:
            pytest.fail(f"npm ci in {TYPESCRIPT} failed:\n{installed.stderr[-3000:]}")
        stamp.write_text(lock)
    built = _run(node, "node_modules/typescript/bin/tsc", "-p", ".", timeout=300)
    if built.returncode != 0:
        pytest.fail(f"tsc failed:\n{built.stdout[-3000:]}{built.stderr[-3000:]}")
    return NodePackage(node, TYPESCRIPT)
