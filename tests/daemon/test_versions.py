"""Version names on the command line: each task's built-in version 0 resolves to itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Settings
from core.errors import KaizendError
from daemon.versions import resolve_version


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # No daemon runs and no database exists: nothing was ever registered.
    return Settings(daemon={"data_dir": tmp_path / "var"})


@pytest.mark.parametrize(("task", "builtin"), [("parser", "rules"), ("retriever", "base")])
def test_builtin_and_first_champion_are_the_tasks_version_zero(
    settings: Settings, task: str, builtin: str
) -> None:
    assert resolve_version(settings, task, builtin) == builtin
    assert resolve_version(settings, task, "champion") == builtin


def test_a_directory_is_taken_as_it_is_and_unknown_names_list_the_choices(
    settings: Settings, tmp_path: Path
) -> None:
    assert resolve_version(settings, "retriever", str(tmp_path)) == tmp_path
    with pytest.raises(KaizendError, match="give base, champion, challenger"):
        resolve_version(settings, "retriever", "rules")
    with pytest.raises(KaizendError, match="give rules, champion, challenger"):
        resolve_version(settings, "parser", "base")
