"""The built wheels installed into a fresh virtual environment beside a service's own package
called ``models``: kaizend puts one name, ``kaizend``, into site-packages, and kaizend-client
one, ``kaizend_client``; the service's ``models`` and ``kaizend.models`` both import.

The fresh environment gets the wheels themselves (``--no-deps``); their dependencies (PyTorch,
DuckDB, ...) it reads from the environment running the tests, through a ``.pth`` line that
appends that environment's site-packages after its own. A ``.pth`` line adds a directory
without running the ``.pth`` files inside it, so the editable install of the source checkout
there stays out of sight.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"core", "daemon", "handlers", "models", "storage"}
SKIP = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "var", "build", "dist", "*.egg-info", "*.dist-info",
    "__pycache__", ".pytest_cache", ".ruff_cache",
)  # fmt: skip


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _top_level(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name.split("/")[0] for name in archive.namelist()}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """kaizend's and kaizend-client's wheels, built from a copy of the tree (a build writes
    build/ and *.egg-info beside the sources), without network or build isolation."""
    tmp = tmp_path_factory.mktemp("wheels")
    source = shutil.copytree(ROOT, tmp / "source", ignore=SKIP, symlinks=True)
    out = tmp / "dist"
    for project in (source / "clients" / "python", source):
        _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
             "--no-build-isolation", "--wheel-dir", out, project, cwd=tmp)  # fmt: skip
    found = {w.name.split("-")[0]: w for w in out.glob("*.whl")}
    assert set(found) == {"kaizend", "kaizend_client"}, found
    return found


def test_the_wheels_hold_one_name_each(wheels: dict[str, Path]) -> None:
    assert _top_level(wheels["kaizend"]) == {"kaizend", "kaizend-0.1.0.dist-info"}
    assert _top_level(wheels["kaizend_client"]) == {
        "kaizend_client", "kaizend_client-0.1.0.dist-info"
    }  # fmt: skip
    with zipfile.ZipFile(wheels["kaizend"]) as archive:
        names = set(archive.namelist())
        metadata = archive.read("kaizend-0.1.0.dist-info/METADATA").decode()
    assert {f"kaizend/{f}/__init__.py" for f in FOLDERS} <= names
    assert "kaizend/storage/schema.sql" in names  # package data travels
    assert "kaizend/handlers/producer.py" not in names  # the client's, not a copy
    assert "Requires-Dist: kaizend-client==0.1.0" in metadata
    with zipfile.ZipFile(wheels["kaizend_client"]) as archive:
        client = archive.read("kaizend_client-0.1.0.dist-info/METADATA").decode()
        assert "kaizend_client-0.1.0.dist-info/licenses/LICENSE" in archive.namelist()
    requires = sorted(
        line.split()[1] for line in client.splitlines() if line.startswith("Requires-Dist")
    )
    assert requires == ["nats-py>=2.16", "pydantic>=2.9"]


def test_installed_beside_a_package_called_models(wheels: dict[str, Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no source checkout
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
         "--no-index", *wheels.values(), cwd=tmp_path, env=env)  # fmt: skip
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                        cwd=tmp_path).strip())  # fmt: skip
    ours = [sysconfig.get_path("purelib"), *site.getsitepackages()]
    (purelib / "zz_test_dependencies.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    installed = {p.name for p in purelib.iterdir()} - {"zz_test_dependencies.pth", "__pycache__"}
    assert not installed & FOLDERS, installed
    assert {"kaizend", "kaizend_client"} <= installed

    # The service: its own package named models, and its code importing both.
    service = tmp_path / "service"
    (service / "models").mkdir(parents=True)
    (service / "models" / "__init__.py").write_text('WHOSE = "the service\'s own models"\n')
    probe = """
import json, models, kaizend, kaizend.models, kaizend.models.task, kaizend.core.config
import kaizend_client
from kaizend.storage.events import integer_ranges
from kaizend.handlers.events import QueryEvent
print(json.dumps({
    "whose": models.WHOSE,
    "files": {m.__name__: m.__file__ for m in (models, kaizend, kaizend.models, kaizend_client)},
    "same_model": QueryEvent is kaizend_client.QueryEvent,
    "rating": integer_ranges()["feedback_events"]["rating"],
}))
"""
    found = json.loads(_run(python, "-c", probe, cwd=service, env=env))
    assert found["whose"] == "the service's own models"
    files = {name: Path(file) for name, file in found["files"].items()}
    assert files["models"] == service / "models" / "__init__.py"
    for name in ("kaizend", "kaizend.models", "kaizend_client"):
        assert files[name].is_relative_to(purelib), (name, files[name])
    assert found["same_model"] is True
    assert found["rating"] == [-128, 127]  # the DDL, read from the installed schema.sql
    # The command line of the installed wheel, from a directory without a config.toml.
    printed = _run(venv / "bin" / "kaizend", "schemas", "--defaults", "routing-entry",
                   cwd=service, env=env)  # fmt: skip
    assert printed == (ROOT / "schemas" / "routing-entry.json").read_text()
