"""The benchmark tables of the docs, generated from the results files in ``bench/results/``.

A table lives in a markdown file (README.md, docs/**.md) between two markers::

    <!-- bench:NAME -->
    (generated: the table, then the line that says which run produced it)
    <!-- /bench:NAME -->

``python bench/report.py`` rewrites every such block from ``bench/results/*.json`` (the lines
that `bench/record.py` keeps), ``--check`` only lists the blocks that differ (and exits 1),
and ``--run [--fast]`` first runs the benchmarks of ``BENCHMARKS`` (``--fast`` skips the long
ones). ``make bench [FAST=1]`` and ``make bench-report`` call it; a test checks that every block
is what this module makes, so a figure typed by hand, or one without a results file behind
it, fails CI.

Each block's last line names the command, the date, the commit and the machine of its run.
When a source of the figures has changed since that commit (by default the benchmark's own
script, plus the ``sources`` of its table) the line says so: "older than the code", with
the commit the figures come from. Re-run the benchmark, or at least regenerate the tables, after
such a change.

Adding a benchmark's table: have the benchmark call ``record(NAME, line)``, add a `Table` to
``TABLES`` below (the results file, the column headers and a function from the run's lines to
rows; columns of figures only, labels being the table's own words), put the markers where
the table belongs, and run ``python bench/report.py``. Results files without a table are
ignored; a block whose NAME has no table is an error. This module uses the standard library
only, so it runs without the project's environment.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOCS = (ROOT / "README.md", ROOT / "docs")

BLOCK = re.compile(r"<!-- bench:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /bench:(?P=name) -->", re.S)


# --- formatting of figures ------------------------------------------------------------------


def pct(share: float | None, digits: int = 1) -> str:
    """0.0123 -> '1.2%'."""
    return "–" if share is None else f"{share * 100:.{digits}f}%"


def num(value: float | None, digits: int = 0) -> str:
    """12345.6 -> '12,346' (with ``digits`` decimals)."""
    return "–" if value is None else f"{value:,.{digits}f}"


def dec(value: float | None, digits: int = 3) -> str:
    """0.05234 -> '0.052'."""
    return "–" if value is None else f"{value:.{digits}f}"


# --- table specs ----------------------------------------------------------------------------

Rows = Callable[[list[dict]], Iterable[Sequence[object]]]


@dataclass(frozen=True)
class Table:
    """How one results file becomes one markdown table."""

    results: str
    """The results file, ``bench/results/<results>.json``."""
    columns: tuple[str, ...]
    """The header row."""
    rows: Rows
    """The shown lines (each with its ``run``) to the table's rows, one cell per column."""
    every_run: bool = False
    """Show the lines of every run in the file (a row per run); otherwise the newest run's."""
    sources: tuple[str, ...] = ()
    """Paths, besides the benchmark's script, whose change makes the figures older than the
    code (for example the package a benchmark measures)."""


def _ingest_rows(lines: list[dict]) -> Iterable[Sequence[object]]:
    for i, line in enumerate(lines, 1):
        yield (
            i,
            f"{num(line['kaizend_events_per_s'])} events/s",
            f"{num(line['raw_events_per_s'])} events/s",
            dec(line["ratio"], 2),
            f"{dec(line['kaizend']['consumer_cpu_s'], 1)} / "
            f"{dec(line['raw']['consumer_cpu_s'], 1)}",
        )


def _background_rows(lines: list[dict]) -> Iterable[Sequence[object]]:
    for i, line in enumerate(lines, 1):
        yield (
            i,
            f"{num(line['quiet_events_per_s'])} events/s",
            f"{num(line['busy_events_per_s'])} events/s",
            dec(line["ratio"], 2),
        )


def _decisions(result: dict, expected: str | None, *, median: bool) -> str:
    """A test's decisions in one case: what it got right first, then what it got wrong."""
    parts = []
    if expected is None:  # A/A: every decision is a false one
        parts.append(f"{pct(result['promoted'])} promoted")
        parts.append(f"{pct(result['rolled_back'])} rolled back")
    else:
        wrong = "rolled_back" if expected == "promoted" else "promoted"
        parts.append(f"{pct(result[expected])} {expected.replace('_', ' ')}")
        if result[wrong]:
            parts.append(f"{pct(result[wrong])} wrongly {wrong.replace('_', ' ')}")
        if median and result["median_units_to_decision"] is not None:
            parts.append(f"median {num(result['median_units_to_decision'])} units")
    return ", ".join(parts)


def _simulation_rows(lines: list[dict]) -> Iterable[Sequence[object]]:
    (line,) = lines
    cases = (
        ("A/A, 60% vs 60%", "aa_60_vs_60", None),
        ("A/A, 5% vs 5%", "aa_5_vs_5", None),
        ("65% vs 60%", "better_65_vs_60", "promoted"),
        ("55% vs 60%", "worse_55_vs_60", "rolled_back"),
    )
    for label, key, expected in cases:
        case = line[key]
        yield (
            label,
            _decisions(case["sequential"], expected, median=True),
            _decisions(case["welch_peeking_every_tick"], expected, median=True),
            _decisions(case["welch_once_at_horizon"], expected, median=False),
        )


def _drift_rows(lines: list[dict]) -> Iterable[Sequence[object]]:
    (line,) = lines
    cat, numeric, emb = line["categorical"], line["numeric"], line["embeddings"]

    def at(group: dict, key: str, sizes: Sequence[str]) -> str:
        return ", ".join(f"{dec(group[s][key])} ({s})" for s in sizes)

    checks = (  # label, group, key, small windows, large windows
        ("chi-square (400 place names, Zipf)", cat, "chi2", ("2000/300", "300/300"),
         ("5000/5000",)),
        ("PSI > 0.1 (same data; decides large windows only)", cat, "psi", ("2000/300", "300/300"),
         ("5000/5000",)),
        ("Kolmogorov-Smirnov", numeric, "ks", ("200/200",), ("5000/5000",)),
        ("normalised Wasserstein > 0.1 (decides large windows only)", numeric, "wasserstein",
         ("200/200",), ("5000/5000",)),
        ("MMD permutation test", emb, "mmd", ("100/100",), ("300/300",)),
        ("domain classifier, threshold raised to the Mann-Whitney null", emb, "domain_auc",
         ("100/100",), ("300/300",)),
        ("domain classifier at a fixed 0.55", emb, "domain_auc_fixed_0.55", ("100/100",),
         ("300/300",)),
    )  # fmt: skip
    for label, group, key, small, large in checks:
        yield label, at(group, key, small), at(group, key, large)
    report = line["report_level"]
    label = f"whole report (every check, {report['trials']} trials)"
    yield label, dec(report["reports_with_input_drift"]), ""


TABLES: dict[str, Table] = {
    "ingest_throughput": Table(
        "ingest_throughput",
        ("run", "kaizend end to end", "bare nats-py consumer", "ratio",
         "consumer CPU s (kaizend / bare)"),
        _ingest_rows,
        every_run=True,
    ),
    "ingest_during_background": Table(
        "ingest_during_background",
        ("run", "quiet", "during a training and an index build", "ratio"),
        _background_rows,
        every_run=True,
    ),
    "experiment_simulations": Table(
        "experiment_simulations",
        ("case", "sequential test (τ = 0.1)", "Welch t-test peeked at every look",
         "Welch once at 10,000"),
        _simulation_rows,
    ),
    "drift_false_alarms": Table(
        "drift_false_alarms",
        ("check (share of trials flagged, alpha 0.05)", "small windows", "large windows"),
        _drift_rows,
    ),
}  # fmt: skip


# --- benchmarks that `--run` runs -----------------------------------------------------------


@dataclass(frozen=True)
class Benchmark:
    """One command of ``make bench``."""

    script: str
    args: tuple[str, ...] = ()
    runs: int = 1
    long: bool = False
    """Skipped by ``--fast`` (``make bench FAST=1``)."""
    needs: str | None = None
    """An environment variable the command needs (its ``{NAME}`` in ``args``); unset: skipped."""


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("experiment_simulations.py"),
    Benchmark("drift_false_alarms.py"),
    Benchmark("experiment_simulations.py", ("--clustered",), long=True),
    Benchmark("ingest_throughput.py", runs=3, long=True),
    Benchmark("ingest_throughput.py", ("--during-background",), long=True),
    Benchmark("drift_month.py", long=True),
    Benchmark("parser_training.py", long=True),
    Benchmark("parser_userpool.py", long=True),
    Benchmark("retriever_indexing.py", long=True),
    Benchmark("retriever_quality.py", long=True),
    Benchmark("ollama_merge.py", long=True),
    Benchmark("parser_latency.py", ("--version", "{PARSER_VERSION}"), long=True,
              needs="PARSER_VERSION"),
)  # fmt: skip


def run_benchmarks(*, fast: bool) -> None:
    """Run every benchmark in turn (each records its own lines), stopping at a failure."""
    for bench in BENCHMARKS:
        if fast and bench.long:
            print(f"skipped (long; FAST): bench/{bench.script} {' '.join(bench.args)}", flush=True)
            continue
        if bench.needs and not os.environ.get(bench.needs):
            print(f"skipped: bench/{bench.script} needs {bench.needs}", flush=True)
            continue
        args = [a.format_map(os.environ) for a in bench.args]
        for _ in range(bench.runs):
            print(f"running: bench/{bench.script} {' '.join(args)}", flush=True)
            subprocess.run([sys.executable, str(ROOT / "bench" / bench.script), *args], check=True)


# --- rendering ------------------------------------------------------------------------------


def load(results: str, directory: Path = RESULTS) -> list[dict]:
    """The lines of ``bench/results/<results>.json`` (none when the file is missing)."""
    path = directory / f"{results}.json"
    if not path.exists():
        return []
    return [json.loads(text) for text in path.read_text().splitlines() if text.strip()]


def _runs(lines: list[dict]) -> list[list[dict]]:
    """Lines grouped by run, oldest first (lines without a run are one run)."""
    groups: dict[str, list[dict]] = {}
    for line in lines:
        groups.setdefault(json.dumps(line.get("run"), sort_keys=True), []).append(line)
    return sorted(groups.values(), key=lambda group: (group[0].get("run") or {}).get("date", ""))


def _git(*args: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


def staleness(run: dict, sources: Sequence[str], root: Path = ROOT) -> str | None:
    """None if ``sources`` are as at the run's commit, else what the table says instead."""
    commit = run.get("commit")
    if not commit:
        return "no commit recorded: the figures are of unknown code"
    if _git("cat-file", "-e", f"{commit}^{{commit}}", root=root).returncode != 0:
        return f"commit {commit} is not in this repository's history"
    # Against the working tree, so a change is flagged before it is committed too.
    changed = _git("diff", "--name-only", commit, "--", *sources, root=root).stdout.split()
    if changed:
        return f"{', '.join(sorted(changed))} changed since commit {commit}"
    return None


def _provenance(table: Table, runs: list[list[dict]], root: Path) -> str:
    first = runs[0][0].get("run")
    if first is None:
        return (
            f"*No run recorded with bench/results/{table.results}.json (no date, commit or "
            "machine): re-run the benchmark, which records them.*"
        )
    dates = sorted({group[0]["run"]["date"][:10] for group in runs})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    count = f", {len(runs)} runs" if len(runs) > 1 else ""
    dirty = " with uncommitted changes" if first.get("uncommitted_changes") else ""
    text = (
        f"`{first['command']}`{count}, {when}, commit {first['commit']}{dirty}, "
        f"{first['cpus']} cores ({first['processor']}), Python {first['python']}."
    )
    script = first["command"].split()[1] if len(first["command"].split()) > 1 else None
    sources = [s for s in (script, *table.sources) if s]
    stale = staleness(first, sources, root)
    if stale:
        text += f" **Older than the code**: {stale}; the figures are those of that commit."
    return text


def render(name: str, *, results: Path = RESULTS, root: Path = ROOT) -> str:
    """The body of the block NAME: the table and the line about its run."""
    if name not in TABLES:
        known = ", ".join(sorted(TABLES))
        raise KeyError(f"<!-- bench:{name} --> has no table in bench/report.py (known: {known})")
    table = TABLES[name]
    runs = _runs(load(table.results, results))
    if not runs:
        return f"*Not measured yet: no bench/results/{table.results}.json.*\n"
    shown = runs if table.every_run else runs[-1:]
    lines = [line for group in shown for line in group]
    out = [
        "| " + " | ".join(table.columns) + " |",
        "|" + "---|" * len(table.columns),
        *("| " + " | ".join(str(cell) for cell in row) + " |" for row in table.rows(lines)),
        "",
        _provenance(table, shown, root),
    ]
    return "\n".join(out) + "\n"


def markdown_files(root: Path = ROOT) -> list[Path]:
    """README.md and every markdown file under docs/."""
    readme, docs = root / "README.md", root / "docs"
    return [p for p in [readme, *sorted(docs.rglob("*.md"))] if p.exists()]


def rewrite(text: str, **kwargs: Path) -> str:
    """``text`` with every marked block generated anew."""

    def block(m: re.Match) -> str:
        name = m["name"]
        return f"<!-- bench:{name} -->\n{render(name, **kwargs)}<!-- /bench:{name} -->"

    return BLOCK.sub(block, text)


def differing_blocks(files: Iterable[Path], **kwargs: Path) -> list[str]:
    """'FILE: NAME' for every block whose text is not what ``render`` makes."""
    out = []
    for path in files:
        for m in BLOCK.finditer(path.read_text()):
            if m["body"] != render(m["name"], **kwargs):
                out.append(f"{path.name}: {m['name']}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="list differing blocks, exit 1")
    parser.add_argument("--run", action="store_true", help="run the benchmarks first")
    parser.add_argument("--fast", action="store_true", help="with --run: skip the long ones")
    args = parser.parse_args()
    if args.run:
        run_benchmarks(fast=args.fast)
    files = markdown_files()
    if args.check:
        differ = differing_blocks(files)
        for where in differ:
            print(f"differs from bench/results: {where} (run `make bench-report`)")
        sys.exit(1 if differ else 0)
    for path in files:
        text = path.read_text()
        new = rewrite(text)
        if new != text:
            path.write_text(new)
            print(f"rewrote the benchmark tables of {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
