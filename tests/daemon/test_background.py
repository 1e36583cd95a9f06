"""Background work runs below the event path's priority, with bounded threads, and stops
with the daemon: the background thread, the preparation processes, the preparing program."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kaizend.daemon.background import (
    MAX_NICENESS,
    BackgroundThread,
    PreparationFailed,
    Preparations,
    threads,
)

from tests.conftest import ROOT, make_settings

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice")


def expected_niceness(niceness: int) -> int:
    return min(os.nice(0) + niceness, MAX_NICENESS)


@linux_only
async def test_the_background_thread_runs_lower_and_bounds_torch_only_there() -> None:
    import torch

    before = torch.get_num_threads()
    background = BackgroundThread(niceness=7)

    def observe() -> tuple[int, int]:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), torch.get_num_threads()

    try:
        niceness, torch_threads = await background.run(observe, torch=True)
    finally:
        background.shutdown()
    assert niceness == expected_niceness(7)
    assert torch_threads == threads()
    # The event loop's thread keeps its priority and torch's threads.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == os.nice(0)
    assert torch.get_num_threads() == before


REPORTS = """
import json, os, sys
settings = json.loads(sys.stdin.read())
with open(os.environ["REPORT"], "w") as out:
    json.dump({"niceness": os.nice(0), "argv": sys.argv[1:],
               "data_dir": settings["daemon"]["data_dir"], "nats": "nats" in settings}, out)
"""


def preparations(tmp_path: Path, program: str, niceness: int = 19) -> Preparations:
    script = tmp_path / "program.py"
    script.write_text(program)
    settings = make_settings(
        tmp_path / "data", "nats://127.0.0.1:4222", daemon={"background_niceness": niceness}
    )
    return Preparations(settings, command=[sys.executable, str(script)])


def test_a_preparation_runs_below_the_daemon_with_the_settings_on_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = tmp_path / "report.json"
    monkeypatch.setenv("REPORT", str(report))
    preparations(tmp_path, REPORTS, niceness=12).run("retriever", "base")
    seen = json.loads(report.read_text())
    assert seen["niceness"] == expected_niceness(12)
    assert seen["argv"] == ["--threads", str(threads()), "retriever", "base"]
    assert seen["data_dir"] == str(tmp_path / "data")
    assert not seen["nats"]  # the section with the secrets stays behind


def test_a_failed_preparation_raises_with_the_task_and_version(tmp_path: Path) -> None:
    with pytest.raises(PreparationFailed, match="preparing retriever v3 .*exit status 2"):
        preparations(tmp_path, "import sys\nsys.exit(2)\n").run("retriever", "v3")


def test_stop_ends_a_running_preparation_promptly(tmp_path: Path) -> None:
    running = preparations(tmp_path, "import time\ntime.sleep(600)\n")
    failure: list[BaseException] = []

    def prepare() -> None:
        try:
            running.run("retriever", "base")
        except PreparationFailed as err:
            failure.append(err)

    thread = threading.Thread(target=prepare)
    thread.start()
    time.sleep(1.0)  # it is sleeping in its own process now
    started = time.monotonic()
    running.stop()
    thread.join(30)
    assert not thread.is_alive() and time.monotonic() - started < 10
    assert failure and "stopped with kaizend" in str(failure[0])
    with pytest.raises(PreparationFailed, match="stopped"):
        running.run("retriever", "base")  # a stopped daemon starts none


def test_the_preparing_program_loads_a_version_and_reports_failure(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", "nats://127.0.0.1:4222")
    payload = settings.model_dump_json(exclude={"nats"})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "kaizend.daemon.prepare", "--threads", "1"]
    done = subprocess.run(
        [*command, "parser", "rules"], input=payload, text=True, capture_output=True, env=env
    )
    assert done.returncode == 0, done.stderr
    failed = subprocess.run(
        [*command, "parser", str(tmp_path / "no-such-version")],
        input=payload, text=True, capture_output=True, env=env,
    )  # fmt: skip
    assert failed.returncode == 1
    assert "Traceback" in failed.stderr
