"""`kaizend --config FILE ...` finds the daemon's data wherever it is run from: a relative
``daemon.data_dir`` in a configuration file lies in the file's directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kaizend.core.config import load_config

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[daemon]
data_dir = "data"
shutdown_grace_s = 10.0
[nats]
embedded_port = 0
[storage]
export_interval_s = 0
[gateway]
enabled = false
[metrics]
port = 0
"""


def clean_env() -> dict[str, str]:
    """The environment without KAIZEND_* overrides, so only the file configures kaizend."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KAIZEND_")}
    return {**env, "PYTHONPATH": str(ROOT)}


def kaizend(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaizend.daemon", *args],
        cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_relative_data_dir_lies_beside_the_file_and_the_environment_is_cwd_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "etc" / "config.toml"
    config.parent.mkdir()
    config.write_text(CONFIG)
    (tmp_path / "bare.toml").write_text("")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("KAIZEND_DAEMON__DATA_DIR", raising=False)
    assert load_config(config).daemon.data_dir == tmp_path / "etc" / "data"
    # A file without data_dir: the default, "var", beside the file too.
    assert load_config(tmp_path / "bare.toml").daemon.data_dir == tmp_path / "var"
    # An environment variable is read like a path on a command line: against the cwd.
    monkeypatch.setenv("KAIZEND_DAEMON__DATA_DIR", "mine")
    assert load_config(config).daemon.data_dir == elsewhere / "mine"


def test_the_cli_run_from_another_directory_finds_the_daemons_data(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "kaizend" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(CONFIG)
    started_in, asked_from = tmp_path / "srv", tmp_path / "home"
    started_in.mkdir()
    asked_from.mkdir()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "kaizend.daemon", "--config", str(config), "run"],
        cwd=started_in, env=clean_env(), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while (check := kaizend(asked_from, "--config", str(config), "check")).returncode:
            assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
            assert time.monotonic() < deadline, f"the daemon never became healthy: {check.stderr}"
            time.sleep(0.2)
        data = config.parent / "data"
        assert (data / "kaizend.duckdb").is_file() and (data / "run" / "daemon.json").is_file()
        assert not (started_in / "var").exists() and not (started_in / "data").exists()

        answer = kaizend(asked_from, "--config", str(config), "sql", "SELECT 41 + 1 AS n")
        assert answer.returncode == 0, answer.stderr
        assert "42" in answer.stdout
        assert not (asked_from / "var").exists() and not (asked_from / "data").exists()
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
