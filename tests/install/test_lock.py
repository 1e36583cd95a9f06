"""The committed lock, ``constraints.txt``, pins everything the project declares.

Every set-up installs through the lock (the Makefile's ``pip install -c constraints.txt``), so
a requirement added to a ``pyproject.toml`` without ``make lock`` would install whatever its
index serves that day; these tests fail instead, naming the requirement.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "constraints.txt"
PYPROJECTS = (ROOT / "pyproject.toml", ROOT / "clients" / "python" / "pyproject.toml")


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, raw in enumerate(LOCK.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and ";" not in version, (
            f"constraints.txt:{number}: {raw!r} is not an exact pin; regenerate it with `make lock`"
        )
        pins[canonicalize_name(name)] = Version(version)
    return pins


def _projects() -> list[dict]:
    return [tomllib.loads(path.read_text())["project"] for path in PYPROJECTS]


def _declared() -> list[tuple[str, Requirement]]:
    """(where, requirement) for every dependency and optional dependency of both projects."""
    out = []
    for path, project in zip(PYPROJECTS, _projects(), strict=True):
        where = str(path.relative_to(ROOT))
        groups = {"dependencies": project.get("dependencies", [])}
        for extra, reqs in project.get("optional-dependencies", {}).items():
            groups[f"optional-dependencies.{extra}"] = reqs
        for group, reqs in groups.items():
            out.extend((f"{where} [{group}]", Requirement(r)) for r in reqs)
    return out


OWN = {canonicalize_name(project["name"]) for project in _projects()}


@pytest.mark.parametrize(("where", "req"), _declared(), ids=lambda v: str(v))
def test_every_declared_requirement_is_pinned_within_its_range(where: str, req: Requirement):
    name = canonicalize_name(req.name)
    if name in OWN or (req.marker is not None and not req.marker.evaluate()):
        return
    pins = _pins()
    assert name in pins, (
        f"{req} ({where}) has no pin in constraints.txt: run `make lock` and commit the lock"
    )
    assert req.specifier.contains(pins[name], prereleases=True), (
        f"constraints.txt pins {req.name}=={pins[name]}, outside {req} ({where}): run `make lock`"
    )


def test_the_lock_inputs_are_pinned_and_torch_without_its_build():
    pins = _pins()
    inputs = [
        line.split("#", 1)[0].strip() for line in (ROOT / "constraints.in").read_text().splitlines()
    ]
    for line in inputs:
        if line and not line.startswith("-"):
            assert canonicalize_name(Requirement(line).name) in pins, f"{line}: run `make lock`"
    # The Makefile installs torch==<this version>+$(TORCH_BUILD): the lock has no local label.
    assert pins["torch"].local is None, "constraints.txt pins a torch build: run `make lock`"
    assert not OWN & pins.keys(), "the lock must not pin the project's own packages"
