"""The benchmark tables of the docs are what `bench/report.py` makes of `bench/results/`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench import record, report

ROOT = Path(__file__).resolve().parents[2]


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=root, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def _full_history() -> bool:
    try:
        return _git(ROOT, "rev-parse", "--is-shallow-repository") == "false"
    except (OSError, subprocess.CalledProcessError):
        return False


@pytest.mark.skipif(not _full_history(), reason="needs the repository's git history")
def test_every_marked_table_is_generated_from_the_results_files():
    files = report.markdown_files()
    assert any(report.BLOCK.search(path.read_text()) for path in files), "no marked table found"
    assert report.differing_blocks(files) == [], "run `make bench-report` and commit the docs"


@pytest.mark.skipif(not _full_history(), reason="needs the repository's git history")
def test_a_figure_typed_by_hand_fails(tmp_path: Path):
    text = (ROOT / "README.md").read_text()
    block = report.BLOCK.search(text)
    assert block is not None
    row = next(line for line in block["body"].splitlines() if line.startswith("| ") and "0" in line)
    edited = tmp_path / "README.md"
    edited.write_text(text.replace(row, row.replace("0", "1", 1), 1))
    assert report.differing_blocks([edited]) == [f"README.md: {block['name']}"]


def test_a_block_without_a_table_spec_is_an_error():
    with pytest.raises(KeyError, match="no table in bench/report.py"):
        report.render("no_such_benchmark")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with one benchmark, `bench/toy.py`, and a table for its results."""
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "toy.py").write_text("print('v1')\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "toy")
    table = report.Table("toy", ("n", "rate"), lambda lines: [(1, lines[-1]["rate"])])
    monkeypatch.setitem(report.TABLES, "toy", table)
    return tmp_path


def _result(repo: Path, commit: str, rate: float) -> None:
    run = {"date": "2026-12-02T10:00:00Z", "commit": commit, "uncommitted_changes": False,
           "command": "python bench/toy.py", "cpus": 2, "processor": "cpu",
           "python": "3.11"}  # fmt: skip
    (repo / "bench" / "results" / "toy.json").write_text(json.dumps({"rate": rate, "run": run}))


def test_results_older_than_the_benchmark_say_so_with_their_commit(repo: Path):
    measured = _git(repo, "rev-parse", "--short=7", "HEAD")
    _result(repo, measured, 0.25)
    kwargs = {"results": repo / "bench" / "results", "root": repo}
    fresh = report.render("toy", **kwargs)
    assert "| 1 | 0.25 |" in fresh
    assert f"commit {measured}, 2 cores" in fresh and "Older" not in fresh

    (repo / "bench" / "toy.py").write_text("print('v2')\n")  # flagged before it is committed
    assert f"bench/toy.py changed since commit {measured}" in report.render("toy", **kwargs)
    _git(repo, "commit", "-qam", "toy v2")
    older = report.render("toy", **kwargs)
    assert "**Older than the code**: bench/toy.py changed since commit" in older
    assert "| 1 | 0.25 |" in older  # the figures stay, labelled

    _result(repo, "0000000", 0.25)
    assert "is not in this repository's history" in report.render("toy", **kwargs)


def test_a_results_file_without_runs_or_missing_is_labelled(repo: Path):
    kwargs = {"results": repo / "bench" / "results", "root": repo}
    assert "Not measured yet" in report.render("toy", **kwargs)
    (repo / "bench" / "results" / "toy.json").write_text('{"rate": 0.5}\n')
    assert "No run recorded" in report.render("toy", **kwargs)


def test_a_run_at_the_same_commit_adds_lines_and_another_commit_replaces_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    monkeypatch.setenv("KAIZEND_BENCH_RESULTS", str(tmp_path))
    record.record("toy", {"rate": 1})
    record.record("toy", {"rate": 2})
    path = tmp_path / "toy.json"
    lines = [json.loads(text) for text in path.read_text().splitlines()]
    assert [line["rate"] for line in lines] == [1, 2]
    assert lines[0]["run"]["commit"] == record.run_info()["commit"]
    assert json.loads(capsys.readouterr().out.splitlines()[0])["rate"] == 1

    older = {**lines[0], "run": {**lines[0]["run"], "commit": "0000000"}}
    path.write_text(json.dumps(older) + "\n")
    record.record("toy", {"rate": 3})
    assert [json.loads(text)["rate"] for text in path.read_text().splitlines()] == [3]
