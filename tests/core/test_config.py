"""Configuration: the documented file, environment overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from kaizend.core.config import Settings, load_config
from kaizend.core.errors import ConfigError
from kaizend.models.kinds import kind_of, kind_settings
from kaizend.models.tasks import build_tasks

ROOT = Path(__file__).resolve().parents[2]


def test_config_toml_documents_exactly_the_defaults() -> None:
    """Every section at its defaults; what it adds are the FIT tasks (each kind setting at
    the kind's default, triggers as declared) and the drift report's embedder."""
    shipped = load_config(ROOT / "config.toml")
    # Its data_dir, "var" like the default, lies beside the file rather than in the cwd.
    expected = Settings(
        daemon={"data_dir": ROOT / "var"},
        tasks=shipped.model_dump()["tasks"],
        drift={"embedder_task": "retriever"},
    )
    assert shipped == expected
    assert Settings().daemon.data_dir == Path.cwd() / "var"
    assert Settings().tasks == {}  # no task unless one is declared
    for name, declaration in shipped.tasks.items():
        kind = kind_of(declaration, name)
        assert kind_settings(declaration, name) == kind.settings_model(), name
    assert shipped.tasks["parser"].triggers.min_new_signal == 100
    assert shipped.tasks["retriever"].triggers.min_new_signal == 200


def test_a_task_declares_its_kind_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "tasks.toml"
    path.write_text(
        '[tasks.tickets]\nkind = "fit-parser"\nprofile = "full"\n'
        "[tasks.tickets.gate]\ntolerance = 0.05\n[tasks.tickets.experiments]\nmin_units = 50\n"
    )
    settings = load_config(path)
    assert settings.tasks["tickets"].kind_settings() == {"profile": "full"}
    assert settings.for_task("tickets").training.gate_tolerance == 0.05
    assert settings.for_task("tickets").experiments.min_units == 50
    assert settings.experiments.min_units == 1000  # the others keep the defaults
    assert settings.served_tasks == ("tickets",)


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [
        ('[tasks.x]\nkind = "no-such-kind"\n', "tasks.x.kind", "installed kinds: "),
        ('[tasks.x]\nkind = "fit-parser"\nprofile = "huge"\n', "tasks.x.profile", "quick"),
        ('[tasks.x]\nkind = "fit-parser"\nbogus = 1\n', "tasks.x.bogus", "Extra inputs"),
    ],
)
def test_a_wrong_kind_or_kind_setting_names_its_key(
    tmp_path: Path, table: str, key: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(table)
    with pytest.raises(ConfigError) as err:
        build_tasks(load_config(path))
    assert err.value.key == key and message in str(err.value)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('[tasks.Bad]\nkind = "fit-parser"\n', "tasks"),
        ('[tasks.x]\nkind = "fit-parser"\n[tasks.x.gate]\nmargn = 0.1\n', "tasks.x.gate"),
        ('[tasks.x]\nkind = "fit-parser"\n[gateway]\ntasks = ["y"]\n', "config"),
    ],
)
def test_a_wrong_declaration_is_refused_at_load(tmp_path: Path, table: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(table)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == key


def test_every_key_can_be_overridden_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEND_NATS__URL", "nats://nats.internal:4222")
    monkeypatch.setenv("KAIZEND_INGEST__BATCH_SIZE", "250")
    settings = load_config(ROOT / "config.toml")
    assert settings.nats.url == "nats://nats.internal:4222"
    assert settings.ingest.batch_size == 250


def test_invalid_value_names_the_key_and_what_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[ingest]\nbatch_size = 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "ingest.batch_size"
    assert "greater than or equal to 1" in str(err.value)


def test_a_rule_across_sections_names_both_keys(tmp_path: Path) -> None:
    path = tmp_path / "ollama.toml"
    path.write_text('[gateway]\nbackend = "ollama"\n')
    with pytest.raises(
        ConfigError, match="'gateway.backend' is 'ollama' but 'ollama.url' is empty"
    ):
        load_config(path)
    path.write_text('[gateway]\nbackend = "ollama"\n[ollama]\nurl = "http://gpu:11434"\n')
    assert load_config(path).gateway.backend == "ollama"


def test_unknown_key_is_an_error_not_ignored(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text("[ingest]\nbatch_sise = 10\n")
    with pytest.raises(ConfigError, match="ingest.batch_sise"):
        load_config(path)


def test_missing_file_and_bad_toml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[nats\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_secrets_never_appear_in_repr_or_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KAIZEND_NATS__PASSWORD", "hunter2")
    settings = load_config(ROOT / "config.toml")
    assert "hunter2" not in repr(settings)
    assert settings.nats.password.get_secret_value() == "hunter2"
    path = tmp_path / "secret.toml"
    path.write_text("[nats]\ntoken = 987654321\n")  # invalid: a number, not a string
    with pytest.raises(ConfigError, match="nats.token") as err:
        load_config(path)
    assert "987654321" not in str(err.value)
