"""Version names on the command line: each task's built-in version 0 resolves to itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from kaizend.core.config import Settings
from kaizend.core.errors import KaizendError
from kaizend.daemon.versions import resolve_version, version_label
from kaizend.storage.events import EventStore
from kaizend.storage.registry import Registry

from tests.conftest import FIT_TASKS


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # No daemon runs and no database exists: nothing was ever registered.
    return Settings(daemon={"data_dir": tmp_path / "var"}, tasks=FIT_TASKS)


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


def test_event_labels_are_the_registrys_version_ids(settings: Settings, tmp_path: Path) -> None:
    assert version_label(settings, "parser", "rules") == "parser-v0"
    assert version_label(settings, "retriever", "champion") == "retriever-v0"
    trained = tmp_path / "runs" / "parser-run" / "version"
    trained.mkdir(parents=True)
    assert version_label(settings, "parser", str(trained)) == "version"  # never registered
    store = EventStore(settings.db_path)
    registry = Registry(store.cursor())
    registry.ensure_initial_champion("parser", base_model="rules", reason="initial")
    registry.register("parser", base_model="smollm2", reason="trained",
                      artifact_path=str(trained), version_id="parser-v3")  # fmt: skip
    registry.promote("parser-v3", "better")
    store.close()
    assert version_label(settings, "parser", str(trained)) == "parser-v3"
    assert version_label(settings, "parser", "champion") == "parser-v3"
    assert version_label(settings, "parser", "parser-v0") == "parser-v0"
    with pytest.raises(KaizendError, match="parser has no challenger now"):
        version_label(settings, "parser", "challenger")
