"""A benchmark's JSON line, printed and kept with when, where and at what commit it ran.

Every benchmark ends with ``record(NAME, line)`` instead of printing its line itself: the line
gets a ``run`` object (the date, the commit and whether tracked files differed from it, the
command, the machine's cores and processor) and is appended to ``bench/results/NAME.json``,
one JSON object per line, which `bench/report.py` turns into the tables of the docs.

A results file describes one commit: a run at the commit of the lines already there adds its
lines (three runs in a row give three lines), a run at any other commit replaces them. Commit
the code first, then run the benchmark, so that the commit recorded is the code measured.
``KAIZEND_BENCH_RESULTS=DIR`` writes the files to DIR instead (a trial run that must not
replace the figures).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def results_dir() -> Path:
    """Where results files are written: ``KAIZEND_BENCH_RESULTS`` or ``bench/results``."""
    return Path(os.environ.get("KAIZEND_BENCH_RESULTS") or RESULTS)


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def run_info() -> dict:
    """This process's run, taken when it started: shared by all the lines it records."""
    # Results files and docs may differ from the commit without changing what was measured.
    changed = _git(
        "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results", ":!*.md"
    )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": _git("rev-parse", "--short=7", "HEAD"),
        "uncommitted_changes": bool(changed) if changed is not None else None,
        "command": " ".join(["python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        "cpus": os.cpu_count(),
        "processor": _processor(),
        "python": platform.python_version(),
    }


# At import, i.e. when the benchmark starts: the code and tree it measures, not the tree at its
# end (a benchmark may run for an hour while its author edits files).
run_info()


def record(name: str, line: dict) -> dict:
    """Print ``line`` as one JSON line and keep it, with its run, in ``results/NAME.json``."""
    line = {**line, "run": run_info()}
    print(json.dumps(line), flush=True)
    path = results_dir() / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = [
        text
        for text in (path.read_text().splitlines() if path.exists() else [])
        if text.strip() and json.loads(text).get("run", {}).get("commit") == line["run"]["commit"]
    ]
    path.write_text("".join(f"{text}\n" for text in [*kept, json.dumps(line)]))
    return line
