"""The ``kaizend`` command line."""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from kaizend.core import __version__
from kaizend.core.config import Settings, load_config
from kaizend.core.errors import DaemonTimeout, DaemonUnavailable, KaizendError


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj


class _Group(click.Group):
    """Turns kaizend's own errors into one readable line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KaizendError as err:
            raise click.ClickException(str(err)) from err


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kaizend")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Configuration file (default: ./config.toml if present). KAIZEND_<SECTION>__<KEY> "
    "environment variables override it.",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """kaizend: a continuous-learning daemon for the models behind production services."""
    try:
        ctx.obj = load_config(config_path)
    except KaizendError as err:
        raise click.UsageError(str(err)) from err


@cli.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the daemon (foreground) until SIGTERM or SIGINT."""
    from kaizend.daemon.app import Daemon
    from kaizend.daemon.logs import setup_logging

    settings = _settings(ctx)
    setup_logging(settings.daemon.log_level)
    sys.exit(asyncio.run(Daemon(settings).run()))


def _request(settings: Settings, what: str, payload: dict[str, Any]) -> dict[str, Any]:
    from kaizend.daemon.client import request_daemon

    return asyncio.run(request_daemon(settings, what, payload))


@cli.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Health check: exit 0 when the daemon answers and is ingesting, 1 otherwise."""
    try:
        status = _request(_settings(ctx), "status", {})
    except (DaemonUnavailable, DaemonTimeout) as err:
        click.echo(f"UNHEALTHY: {err}")
        sys.exit(1)
    click.echo(f"{'OK' if status['healthy'] else 'UNHEALTHY'}: {status['health']}")
    sys.exit(0 if status["healthy"] else 1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status document as JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Counts, consumer lag and the last event time."""
    settings = _settings(ctx)
    try:
        doc = _request(settings, "status", {})
    except DaemonUnavailable as err:
        from kaizend.daemon.client import read_status_offline

        doc = {"daemon": f"not running ({err})", **read_status_offline(settings)}
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key, value in doc.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        table.add_row(f"[bold]{key}[/bold]", str(value))
    Console().print(table)


def _emit(result: dict[str, Any], fmt: str) -> None:
    columns, rows = result["columns"], result["rows"]
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(dict(zip(columns, row, strict=True)), default=str))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        from rich.console import Console
        from rich.table import Table

        cells = [["NULL" if v is None else str(v) for v in row] for row in rows]
        table = Table(*columns)
        for row in cells:
            table.add_row(*row)
        # Never truncate values: as wide as the widest row needs (a pager or file can scroll).
        needed = sum(max([len(c), *(len(r[i]) for r in cells)]) + 3 for i, c in enumerate(columns))
        Console(width=max(needed + 1, 80) if not sys.stdout.isatty() else None).print(table)
    if result.get("truncated"):
        click.echo(f"(truncated to {len(rows)} rows)", err=True)


@cli.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option("--max-rows", type=click.IntRange(min=1), default=None, help="Rows at most.")
@click.pass_context
def sql(ctx: click.Context, query: str, fmt: str, max_rows: int | None) -> None:
    """Run a read-only query: by the running daemon, or on the file when it is down."""
    from kaizend.daemon.client import sql_query

    _emit(sql_query(_settings(ctx), query, max_rows), fmt)


_model_option = click.option(
    "--model",
    "version",
    default="champion",
    show_default=True,
    help="rules, champion, challenger, a version id, or a version directory.",
)


def _read_events(path: Path, prefix: str) -> Iterator[Any]:
    from kaizend.handlers.publish import KINDS, Outgoing

    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                kind = event.pop("kind")
            except (json.JSONDecodeError, KeyError, AttributeError) as err:
                raise click.ClickException(
                    f'{path}:{number}: each line must be a JSON object with a "kind" '
                    f"({'|'.join(KINDS)}): {err}"
                ) from err
            yield Outgoing(f"{prefix}.{kind}", json.dumps(event).encode(), event.get("event_id"))


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def publish(ctx: click.Context, file: Path) -> None:
    """Publish the events of FILE.jsonl (one object a line, with a "kind") to NATS."""
    from kaizend.daemon.client import publish_file

    settings = _settings(ctx)
    events = list(_read_events(file, settings.stream.subject_prefix))
    report = asyncio.run(publish_file(settings, events))
    click.echo(
        f"published {report.published} events ({report.duplicates} dropped by the server as "
        "duplicates)"
    )


@cli.command()
@_model_option
@click.pass_context
def parse(ctx: click.Context, version: str) -> None:
    """Parse queries from stdin (plain lines, or JSONL with a "text"); write JSONL results."""
    from kaizend.daemon.versions import resolve_version
    from kaizend.models.parser.serve import load_parser

    parser = load_parser(resolve_version(_settings(ctx), "parser", version))
    for number, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        text = line.rstrip("\n")
        if line.lstrip().startswith("{"):
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise click.ClickException(
                    f'stdin:{number}: a JSON line needs a "text": {err}'
                ) from err
        click.echo(json.dumps(parser.parse(text).to_json()))


_retriever_model_option = click.option(
    "--model",
    "version",
    default="champion",
    show_default=True,
    help="base, champion, challenger, a version id, or a version directory.",
)


def _retriever_task(settings: Settings, serving: str | Path = "base") -> Any:
    """The retriever task over the data directory's ChromaDB store, with progress bars."""
    from dataclasses import replace

    from kaizend.models.tasks import build_task

    return replace(build_task(settings, "retriever", serving=serving), progress_bar=True)


@cli.command()
@_retriever_model_option
@click.argument("query")
@click.option("-k", "--top", type=click.IntRange(min=1), default=None, help="Results (top_k).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON lines.")
@click.pass_context
def search(ctx: click.Context, version: str, query: str, top: int | None, as_json: bool) -> None:
    """Search the FIT sites with a retriever version; builds its index first if needed."""
    from kaizend.daemon.versions import resolve_version

    settings = _settings(ctx)
    retriever = _retriever_task(settings).load(resolve_version(settings, "retriever", version))
    results = retriever.search(query, top)
    if as_json:
        for rank, result in enumerate(results, 1):
            row = {"rank": rank, "doc_id": result.doc_id, "score": round(result.score, 4)}
            click.echo(json.dumps({**row, "text": result.text}))
        return
    rows = [[rank, r.doc_id, f"{r.score:.3f}", r.text] for rank, r in enumerate(results, 1)]
    _emit({"columns": ["rank", "fit_id", "score", "document"], "rows": rows}, "table")


@cli.group()
def models() -> None:
    """The model registry: versions, their status and the alias history."""


@models.command(name="list")
@click.option("--task", default=None, help="Only this task's versions.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
def models_list(ctx: click.Context, task: str | None, fmt: str) -> None:
    """Every version with its status and why it last changed."""
    from kaizend.daemon.client import sql_query
    from kaizend.daemon.versions import sql_literal

    where = f"WHERE task = {sql_literal(task)}" if task else ""
    query = (
        "SELECT version_id, task, status, base_model, parent_version, "
        "strftime(created_at, '%Y-%m-%d %H:%M') AS created, status_reason "
        f"FROM model_versions {where} ORDER BY task, created_at"
    )
    _emit(sql_query(_settings(ctx), query, None), fmt)


@models.command(name="show")
@click.argument("version_id")
@click.pass_context
def models_show(ctx: click.Context, version_id: str) -> None:
    """One version and its lineage: training run, the events it learned from, config,
    metrics on each evaluation set next to the champion's, the gate's decision, parent."""
    from kaizend.daemon.lineage import version_lineage

    for title, section in version_lineage(_settings(ctx), version_id):
        click.echo(f"{title}:")
        if isinstance(section, str):
            click.echo(f"  {section}")
        elif section["rows"]:
            _emit(section, "table")
        else:
            click.echo("  (none)")


@cli.group()
def ollama() -> None:
    """The parser's versions on the Ollama server (ollama.url)."""


@ollama.command(name="publish")
@click.argument("version_id")
@click.pass_context
def ollama_publish(ctx: click.Context, version_id: str) -> None:
    """Create (or replace) the Ollama model of a parser version: after a publication that
    failed at promotion, or to try a candidate through Ollama before promoting it."""
    from kaizend.daemon.client import sql_query
    from kaizend.daemon.versions import sql_literal
    from kaizend.models.parser.ollama import publish_version
    from kaizend.storage.registry import VersionRecord

    settings = _settings(ctx)
    if not settings.ollama.url:
        raise click.UsageError("ollama.url is empty: set it (KAIZEND_OLLAMA__URL) to publish")
    fields = ", ".join(VersionRecord.__dataclass_fields__)
    found = sql_query(
        settings,
        f"SELECT {fields} FROM model_versions WHERE version_id = {sql_literal(version_id)}",
        1,
    )
    if not found["rows"]:
        raise click.ClickException(f"no version {version_id!r}: see `kaizend models list`")
    values = dict(zip(VersionRecord.__dataclass_fields__, found["rows"][0], strict=True))
    values["metrics"] = None  # not needed to publish
    publication = publish_version(settings, VersionRecord(**values))
    click.echo(f"{publication.model} created in {publication.seconds:.1f} s")
    for name, digest in publication.blobs.items():
        click.echo(f"  {name}  {digest}")


@cli.group()
def experiments() -> None:
    """Live A/B experiments: their status and the decision log of every tick."""


@experiments.command(name="list")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
def experiments_list(ctx: click.Context, fmt: str) -> None:
    """Every experiment, newest first, with its current step and share."""
    from kaizend.daemon.client import sql_query

    query = (
        "SELECT e.experiment_id, e.task, e.champion, e.challenger, e.status, "
        "max(s.step) AS step, arg_max(s.weight, s.step) AS challenger_share, "
        "strftime(e.created_at, '%Y-%m-%d %H:%M') AS created, e.reason "
        "FROM experiments e JOIN experiment_steps s USING (experiment_id) "
        "GROUP BY ALL ORDER BY created DESC"
    )
    _emit(sql_query(_settings(ctx), query, None), fmt)


@experiments.command(name="show")
@click.argument("experiment_id")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
def experiments_show(ctx: click.Context, experiment_id: str, fmt: str) -> None:
    """The timeline of one experiment's decisions, with the numbers behind each: units (the
    unit of randomisation) and queries per arm in the current step, the design effect (the
    success variance over units against independent queries), whether the units' history
    adjusted it and the share of variance that removed, and the effect with its interval."""
    from kaizend.daemon.client import sql_query
    from kaizend.daemon.versions import sql_literal

    query = (
        "SELECT strftime(decided_at, '%Y-%m-%d %H:%M:%S') AS decided, step, weight, "
        "n_champion AS units_champion, n_challenger AS units_challenger, "
        "CAST(queries_champion AS BIGINT) AS queries_champion, "
        "CAST(queries_challenger AS BIGINT) AS queries_challenger, "
        "round(design_effect, 2) AS design_effect, adjusted, "
        "round(variance_removed, 3) AS variance_removed, "
        "round(champion_value, 4) AS champion, "
        "round(challenger_value, 4) AS challenger, round(effect, 4) AS effect, "
        "round(ci_lower, 4) AS ci_lower, round(ci_upper, 4) AS ci_upper, "
        "round(p_value, 5) AS p_value, gate, action, reason FROM experiment_decisions "
        f"WHERE experiment_id = {sql_literal(experiment_id)} ORDER BY decided_at"
    )
    result = sql_query(_settings(ctx), query, None)
    if not result["rows"]:
        raise click.ClickException(
            f"no decisions for experiment {experiment_id!r}: see `kaizend experiments list`"
        )
    _emit(result, fmt)


def _control(settings: Settings, what: str, payload: dict[str, Any]) -> Any:
    """Ask the running daemon to act on its experiments; the reply's ``done``."""
    try:
        reply = _request(settings, what, payload)
    except DaemonUnavailable as err:
        raise click.ClickException(
            f"{err}; promotions, rollbacks and pauses go through the running daemon "
            "(kaizend run), which owns the registry and the routing"
        ) from err
    if "error" in reply:
        raise click.ClickException(reply["error"])
    return reply["done"]


_reason_option = click.option(
    "--reason", default="manual", show_default=True, help="Why, for the registry's history."
)


def _switch_command(action: str, doc: str) -> None:
    """``kaizend experiments pause|resume ID``: one command per action."""

    @experiments.command(name=action, help=doc)
    @click.argument("experiment_id")
    @_reason_option
    @click.pass_context
    def command(ctx: click.Context, experiment_id: str, reason: str) -> None:
        payload = {"experiment_id": experiment_id, "action": action, "reason": reason}
        done = _control(_settings(ctx), "experiment", payload)
        click.echo(f"experiment {done['experiment_id']} is {done['status']}")


_switch_command("pause", "Send all traffic to the champion and stop deciding, until `resume`.")
_switch_command(
    "resume", "Carry on at the paused step's share (a new step: its data is a stratum of its own)."
)


@cli.command()
@click.argument("task", type=click.Choice(["parser", "retriever"]))
@click.argument("version")
@_reason_option
@click.pass_context
def promote(ctx: click.Context, task: str, version: str, reason: str) -> None:
    """Make VERSION the task's champion now (an experiment of the task ends)."""
    _control(_settings(ctx), "promote", {"task": task, "version": version, "reason": reason})
    click.echo(f"{version} is the {task} champion")


@cli.command()
@click.argument("task", type=click.Choice(["parser", "retriever"]))
@click.argument("version")
@_reason_option
@click.pass_context
def challenge(ctx: click.Context, task: str, version: str, reason: str) -> None:
    """Make VERSION the task's challenger by hand (no offline gate): an experiment starts."""
    _control(_settings(ctx), "challenge", {"task": task, "version": version, "reason": reason})
    click.echo(f"{version} is the {task} challenger; its experiment starts at the next tick")


@cli.command()
@click.argument("task", type=click.Choice(["parser", "retriever"]))
@_reason_option
@click.pass_context
def rollback(ctx: click.Context, task: str, reason: str) -> None:
    """Roll back the task: a running experiment's challenger, else the champion to the
    previous one."""
    serving = _control(_settings(ctx), "rollback", {"task": task, "reason": reason})
    click.echo(f"rolled back: {serving} serves {task}")


@cli.command()
@click.pass_context
def gateway(ctx: click.Context) -> None:
    """Run an inference gateway on this box (kaizen.infer.<task>) until SIGTERM.

    The daemon runs one itself (gateway.enabled); more instances share the requests. Point
    nats.url at the daemon's NATS; the version directories must be on shared storage.
    """
    from kaizend.daemon.logs import setup_logging
    from kaizend.daemon.serving import run_gateway

    settings = _settings(ctx)
    setup_logging(settings.daemon.log_level)
    sys.exit(asyncio.run(run_gateway(settings)))


@cli.command()
@click.argument("task", type=click.Choice(["parser", "retriever"]))
@click.argument("text")
@click.option("--unit", "unit_id", default=None, help="Unit (user) id for sticky routing.")
@click.pass_context
def infer(ctx: click.Context, task: str, text: str, unit_id: str | None) -> None:
    """Ask the inference gateway, as a service would; print its JSON reply."""
    from kaizend.daemon.client import infer as ask

    click.echo(json.dumps(asyncio.run(ask(_settings(ctx), task, text, unit_id))))


_JOBS_QUERY = """
SELECT job_id, task, state,
       strftime(requested_at, '%Y-%m-%d %H:%M:%S') AS requested,
       CASE WHEN finished_at IS NOT NULL
            THEN round(epoch(finished_at) - epoch(started_at)) || ' s'
            WHEN started_at IS NOT NULL
            THEN 'running ' || round(epoch(now()) - epoch(started_at)) || ' s' END AS took,
       CASE WHEN progress IS NOT NULL THEN
            (progress->>'step') || '/' || (progress->>'total_steps')
            || ' loss ' || round(CAST(progress->>'loss' AS DOUBLE), 4)
            || ' eta ' || round(CAST(progress->>'eta_s' AS DOUBLE)) || ' s' END AS progress,
       version_id, reason, error
FROM training_jobs {where} ORDER BY requested_at DESC, attempt DESC LIMIT {limit}
"""


@cli.command()
@click.option("--task", default=None, help="Only this task's jobs.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
def jobs(ctx: click.Context, task: str | None, limit: int, fmt: str) -> None:
    """Training jobs, newest first: queued, running (with progress), finished and failed."""
    from kaizend.daemon.client import sql_query
    from kaizend.daemon.versions import sql_literal

    where = f"WHERE task = {sql_literal(task)}" if task else ""
    _emit(sql_query(_settings(ctx), _JOBS_QUERY.format(where=where, limit=limit), None), fmt)


def _since(value: str | None) -> Any:
    """``--since``: an ISO date or time (UTC unless it says otherwise), or ``7d``, ``12h``,
    ``30m`` ago."""
    from datetime import UTC, datetime, timedelta

    if value is None:
        return None
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if value[:-1].isdigit() and value[-1:] in units:
        return datetime.now(UTC) - timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as err:
        raise click.BadParameter(
            f"{value!r}: give an ISO date or time (2026-11-23, 2026-11-23T08:00) or an age "
            "such as 7d, 12h or 30m",
            param_hint="--since",
        ) from err
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{float(value):.4g}"


def _drift_rows(checks: list[dict[str, Any]]) -> dict[str, Any]:
    """Checks (stored rows or a fresh report's) as a table for `_emit`."""
    rows = []
    order = ("checked_at", "task", "kind", "field", "method")
    for c in sorted(checks, key=lambda c: tuple(str(c[k]) for k in order)):
        detail = c.get("detail") or {}
        if isinstance(detail, str):
            detail = json.loads(detail)
        flagged = {"performance": "ALARM", "volume": "GAP"}.get(c["kind"], "DRIFT")
        if c["score"] is None:
            verdict = "skipped"
        elif c["drifted"]:
            verdict = flagged if c["decisive"] else "drift (context)"
        else:
            verdict = "ok" if c["decisive"] else "ok (context)"
        note = detail.get("skipped") or c.get("version_id") or ""
        rows.append([
            str(c["checked_at"])[:16], c["task"], c["kind"], c["field"], c["method"],
            c["n_reference"], c["n_current"], _number(c["score"]),
            ("< " if c["direction"] == "below" else "> ") + _number(c["threshold"]), verdict,
            note,
        ])  # fmt: skip
    columns = ["checked", "task", "kind", "field", "method", "n ref", "n cur", "score",
               "drift if", "result", "note"]  # fmt: skip
    return {"columns": columns, "rows": rows}


_DRIFT_CHECKS = """
SELECT report_id, task, checked_at, kind, field, method, version_id, n_reference, n_current,
       score, threshold, direction, p_value, drifted, decisive, detail
FROM {source} {where} ORDER BY checked_at, task, kind, field, method
"""
_DRIFT_REPORTS = """
SELECT report_id, task, created_at, trigger, reference, n_reference, n_current, input_drift,
       performance_alarm, action FROM drift_reports {where} ORDER BY created_at
"""


def _print_drift_summary(reports: list[dict[str, Any]]) -> None:
    for r in reports:
        verdicts = [name for flag, name in ((r["input_drift"], "INPUT DRIFT"),
                    (r["performance_alarm"], "PERFORMANCE ALARM")) if flag]  # fmt: skip
        click.echo(
            f"{r['task']} {str(r['created_at'])[:16]}: {', '.join(verdicts) or 'no drift'}; "
            f"reference {r['reference']} ({r['n_reference']} queries), current "
            f"{r['n_current']} queries" + (f"; {r['action']}" if r.get("action") else "")
        )


@cli.command()
@click.argument("task", required=False)
@click.option(
    "--since",
    default=None,
    help="The checks made since then (an ISO date or time, or an age: 7d, 12h, 30m); default: "
    "each task's newest report; with --html: 30d.",
)
@click.option(
    "--run",
    "run_now",
    is_flag=True,
    help="Compute a report now: the running daemon stores it and acts on it (retraining on "
    "drift); when it is down, it is computed here from the file and only printed.",
)
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write one self-contained HTML report with plots to this file.",
)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
def drift(
    ctx: click.Context,
    task: str | None,
    since: str | None,
    run_now: bool,
    html: Path | None,
    fmt: str,
) -> None:
    """Drift reports: input drift, the champion's performance, volume gaps.

    Reads the stored reports through the running daemon, or from the file when it is down.
    """
    from kaizend.daemon.client import drift_now, sql_query
    from kaizend.daemon.versions import sql_literal

    settings = _settings(ctx)
    if run_now:
        reports, stored = drift_now(settings, task)
        _print_drift_summary([r["report"] for r in reports])
        if not stored:
            click.echo("(the daemon is down: computed from the file, not stored)", err=True)
        _emit(_drift_rows([c for r in reports for c in r["checks"]]), fmt)
    if html is not None:
        from kaizend.daemon.drift_html import write_report

        moment = _since(since or "30d")
        size = write_report(settings, html, since=moment, task=task)
        click.echo(f"wrote {html} ({size / 1024:.0f} KiB)", err=True)
    if run_now or html is not None:
        return
    moment = _since(since)
    conditions = [f"task = {sql_literal(task)}"] if task else []
    if moment is not None:
        conditions.append(f"checked_at >= '{moment.isoformat()}'")
    where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
    source = "drift_checks" if moment is not None else "latest_drift"
    checks = sql_query(settings, _DRIFT_CHECKS.format(source=source, where=where), None)
    report_where = where.replace("checked_at", "created_at")
    if moment is None:
        report_where = ("WHERE " if not task else where + " AND ") + (
            "report_id IN (SELECT report_id FROM latest_drift)"
        )
    reports = sql_query(settings, _DRIFT_REPORTS.format(where=report_where), None)
    rows = [dict(zip(reports["columns"], row, strict=True)) for row in reports["rows"]]
    if not rows:
        raise click.ClickException(
            "no drift reports stored yet: the daemon makes one every drift.interval_s, or run "
            "`kaizend drift --run`"
        )
    if fmt == "table":
        _print_drift_summary(rows)
    records = [dict(zip(checks["columns"], row, strict=True)) for row in checks["rows"]]
    _emit(_drift_rows(records), fmt)


@cli.command()
@click.option("--name", default=None, help="Worker name in job records (default host:pid).")
@click.pass_context
def worker(ctx: click.Context, name: str | None) -> None:
    """Run a training worker: take jobs from the daemon's queue until SIGTERM.

    For a second GPU box: point nats.url at the daemon's NATS and make data_dir/runs the
    same shared directory as the daemon's (the runs' snapshots and versions live there).
    """
    from kaizend.daemon.logs import setup_logging
    from kaizend.daemon.worker import run_worker

    settings = _settings(ctx)
    setup_logging(settings.daemon.log_level)
    sys.exit(asyncio.run(run_worker(settings, name)))


@cli.command()
@click.argument("task", type=click.Choice(["parser", "retriever"]))
@click.option(
    "--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
def examples(ctx: click.Context, task: str, split: str, seed: int) -> None:
    """Write generated examples as JSONL: a parser split {id, text, expected, category}, or
    the retriever's benchmark queries {id, text, relevant_ids}."""
    if task == "retriever":
        if split != "test":
            raise click.UsageError("the retriever has one benchmark set: leave out --split")
        for example in _retriever_task(_settings(ctx)).benchmark_examples():
            click.echo(json.dumps(example))
        return
    from kaizend.models.fit.querygen import generate_examples, split_examples

    for example in split_examples(generate_examples(seed=seed), seed=seed)[split]:
        click.echo(json.dumps(example))


@cli.group()
def train() -> None:
    """Start a training: queued by the running daemon, or with --here in this process."""


_here_option = click.option(
    "--here",
    is_flag=True,
    help="Train in this process, in the foreground, instead of queueing a job in the running "
    "daemon (the stored events are read from the database file when the daemon is down).",
)


def _queue_training(settings: Settings, task: str, here: bool, **foreground_only: Any) -> bool:
    """Without --here: ask the running daemon to queue a job and print it; True if done."""
    if here:
        return False
    given = [name for name, value in foreground_only.items() if value is not None]
    if given:
        raise click.UsageError(f"--{given[0]} applies only with --here")
    try:
        reply = _request(settings, "train", {"task": task})
    except DaemonUnavailable as err:
        raise click.ClickException(
            f"{err}; start the daemon (kaizend run), or train in this process with --here"
        ) from err
    if "error" in reply:
        raise click.ClickException(reply["error"])
    job = reply["job"]
    retry = f" with {job['error']}, its retry is pending" if job["state"] == "failed" else ""
    click.echo(
        f"training job {job['job_id']} is {job['state']}{retry} ({job['reason']}); "
        "follow it with `kaizend jobs`"
    )
    return True


@train.command(name="parser")
@click.option(
    "--profile",
    type=click.Choice(["quick", "full"]),
    default=None,
    help="Training profile (default: parser.profile).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Version directory (default: <data_dir>/models/parser/manual-<time>); an "
    "unfinished one resumes from its checkpoint.",
)
@_here_option
@click.pass_context
def train_parser_command(
    ctx: click.Context, profile: str | None, out: Path | None, here: bool
) -> None:
    """Generated FIT examples plus the stored corrections -> a LoRA adapter version."""
    import time as _time

    from kaizend.daemon.logs import setup_logging
    from kaizend.models.tasks import build_task

    settings = _settings(ctx)
    if _queue_training(settings, "parser", here, profile=profile, out=out):
        return
    setup_logging(settings.daemon.log_level)
    if profile:
        settings = settings.model_copy(
            update={"parser": settings.parser.model_copy(update={"profile": profile})}
        )
    task = build_task(settings, "parser")
    out = out or settings.path(Path("models/parser") / _time.strftime("manual-%Y%m%dT%H%M%S"))
    training_set = task.build_training_set(_offline_events(settings))
    click.echo(
        f"training on {len(training_set.train)} examples "
        f"({len(training_set.event_ids.get('correction', []))} stored corrections)",
        err=True,
    )
    version = task.train(training_set, out, progress_bar=True)
    click.echo(str(version))


@train.command(name="retriever")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Version directory (default: <data_dir>/models/retriever/manual-<time>); an "
    "unfinished one resumes from its newest checkpoint.",
)
@_retriever_model_option
@_here_option
@click.pass_context
def train_retriever_command(ctx: click.Context, out: Path | None, version: str, here: bool) -> None:
    """Stored retrieval feedback -> training pairs -> a fine-tuned embedder version.

    --model names the serving version whose index hard negatives are mined from.
    """
    import time as _time

    from kaizend.daemon.logs import setup_logging
    from kaizend.daemon.versions import resolve_version

    settings = _settings(ctx)
    if _queue_training(settings, "retriever", here, out=out):
        return
    setup_logging(settings.daemon.log_level)
    task = _retriever_task(settings, resolve_version(settings, "retriever", version))
    out = out or settings.path(Path("models/retriever") / _time.strftime("manual-%Y%m%dT%H%M%S"))
    training_set = task.build_training_set(_offline_events(settings))
    click.echo(
        f"training on {len(training_set.train)} pairs, validating on "
        f"{len(training_set.validation)}",
        err=True,
    )
    click.echo(str(task.train(training_set, out, progress_bar=True)))


def _offline_events(settings: Settings) -> Any:
    """The event store opened read-only, or an empty in-memory one when there is none."""
    import duckdb
    from kaizend.core.errors import StorageError
    from kaizend.daemon.client import open_offline
    from kaizend.storage.events import apply_schema

    try:
        return open_offline(settings)
    except StorageError as err:
        click.echo(f"no stored events used: {err}", err=True)
        con = duckdb.connect()
        apply_schema(con)
        return con


def _print_report(report: dict[str, Any], as_json: bool) -> None:
    """An evaluator's report: one JSON object, or a metric/value table."""
    if as_json:
        click.echo(json.dumps(report))
        return
    _emit({"columns": ["metric", "value"], "rows": [[k, v] for k, v in report.items()]}, "table")


@cli.group(name="eval")
def eval_group() -> None:
    """Evaluate a model version with its task's evaluator."""


@eval_group.command(name="parser")
@_model_option
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="JSONL of {text, expected}.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option(
    "--unconstrained",
    is_flag=True,
    help="Decode freely instead of under the target format's grammar (for comparison).",
)
@click.pass_context
def eval_parser(
    ctx: click.Context, version: str, data: Path, as_json: bool, unconstrained: bool
) -> None:
    """JSON-valid rate, exact match, field accuracy, fallback rate, latency p50/p95, ..."""
    from kaizend.daemon.versions import resolve_version
    from kaizend.models.parser.evaluate import evaluate, load_examples
    from kaizend.models.parser.serve import load_parser

    try:
        examples = load_examples(data)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    settings = _settings(ctx)
    parser = load_parser(
        resolve_version(settings, "parser", version),
        constrained=settings.parser.constrained and not unconstrained,
    )
    report = evaluate(parser, examples)
    _print_report(report, as_json)


@eval_group.command(name="retriever")
@_retriever_model_option
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="JSONL of {text, relevant_ids} (`kaizend examples retriever` writes some).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.pass_context
def eval_retriever(ctx: click.Context, version: str, data: Path, as_json: bool) -> None:
    """Recall@1/5/10, MRR@10 and nDCG@10 over the version's own collection."""
    from kaizend.daemon.versions import resolve_version
    from kaizend.models.retriever.evaluate import load_examples

    try:
        examples = load_examples(data)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    settings = _settings(ctx)
    task = _retriever_task(settings)
    report = task.evaluate(resolve_version(settings, "retriever", version), examples)
    _print_report(report, as_json)


@cli.command()
@click.argument("task", type=click.Choice(["retriever"]))
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File (stdout)."
)
@_retriever_model_option
@click.pass_context
def pairs(ctx: click.Context, task: str, fmt: str, out: Path | None, version: str) -> None:
    """Export the training pairs the stored feedback makes, for inspection.

    --model names the serving version whose index hard negatives are mined from (when its
    collection is complete; otherwise from the stored rankings only).
    """
    from kaizend.daemon.versions import resolve_version
    from kaizend.models.retriever.pairs import (
        build_pairs,
        collect_judgements,
        pairs_to_csv,
        pairs_to_json,
    )

    settings = _settings(ctx)
    retriever = _retriever_task(settings, resolve_version(settings, "retriever", version))
    documents = {document.id: document.text for document in retriever.documents}
    queries, skipped = collect_judgements(
        _offline_events(settings), settings.retriever.pairs, known_ids=set(documents)
    )
    built = build_pairs(
        queries,
        documents,
        settings.retriever.pairs,
        mine=retriever.mining_search(),
        seed=settings.retriever.training.seed,
    )
    text = pairs_to_csv(built) if fmt == "csv" else pairs_to_json(built)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
    note = f", skipped {dict(skipped)}" if skipped else ""
    click.echo(f"{len(built)} pairs from {len(queries)} judged queries{note}", err=True)


@cli.group()
def simulate() -> None:
    """Simulated users: generated queries served by a version, noisily rated and corrected,
    written as events for `kaizend publish`."""


_simulate_out_option = click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="JSONL of events with a kind, for `kaizend publish`.",
)


def _write_events(out: Path, events: list[dict[str, Any]]) -> None:
    """Write simulated events as JSONL and say how many of each kind."""
    with out.open("w") as lines:
        for event in events:
            lines.write(json.dumps(event) + "\n")
    counts = {
        kind: sum(e["kind"] == kind for e in events) for kind in ("query", "feedback", "correction")
    }
    click.echo(f"wrote {len(events)} events to {out}: {counts}", err=True)


@simulate.command(name="retriever")
@click.option("--queries", type=click.IntRange(min=1), default=2000, show_default=True)
@_simulate_out_option
@click.option("--seed", type=int, default=1, show_default=True)
@_retriever_model_option
@click.pass_context
def simulate_retriever(
    ctx: click.Context, queries: int, out: Path, seed: int, version: str
) -> None:
    """Retrieval queries over the register, rated result by result, some corrected.

    The queries never ask what the benchmark queries ask, so `kaizend examples retriever`
    stays a held-out set.
    """
    from kaizend.daemon.versions import resolve_version, version_label
    from kaizend.models.fit.retrieval import Register, generate_queries, simulate_feedback

    settings = _settings(ctx)
    retriever_task = _retriever_task(settings)
    resolved = resolve_version(settings, "retriever", version)
    register = Register(retriever_task.sites)
    held_out = {query.key for query in retriever_task.benchmark_queries()}
    generated = generate_queries(register, queries, seed=seed, exclude_keys=held_out)
    retriever = retriever_task.load(resolved)
    label = version_label(settings, "retriever", version)
    events = simulate_feedback(generated, retriever, register, seed=seed, model_version=label)
    _write_events(out, events)


@simulate.command(name="parser")
@click.option("--queries", type=click.IntRange(min=1), default=2000, show_default=True)
@_simulate_out_option
@click.option(
    "--pool",
    "pool_name",
    type=click.Choice(["traffic", "heldout"]),
    default="traffic",
    show_default=True,
    help="traffic: what users send day to day; heldout: questions whose slot combinations "
    "traffic never has, to judge a version trained on traffic's corrections.",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--noise",
    type=click.FloatRange(0, 1),
    default=None,
    help="Share of raters who get it backwards (default: UserBehaviour's, 0.1).",
)
@click.option(
    "--correction-share",
    type=click.FloatRange(0, 1),
    default=None,
    help="Share of wrong parses whose user sends the intended parse back (default: "
    "UserBehaviour's, 0.5).",
)
@_model_option
@click.pass_context
def simulate_parser(
    ctx: click.Context,
    queries: int,
    out: Path,
    pool_name: str,
    seed: int,
    noise: float | None,
    correction_share: float | None,
    version: str,
) -> None:
    """Questions from the user pool (not the training generator), parsed by a version and
    judged by users who know the intended parse; a share of wrong parses get corrected.

    One query a second, timed so that the last reaction comes a minute before now; the same
    seed and version write the same event ids, so publishing a file twice stores it once.
    """
    from datetime import UTC, datetime, timedelta

    from kaizend.daemon.versions import resolve_version, version_label
    from kaizend.models.fit.userpool import pool, sample_traffic
    from kaizend.models.fit.users import UserBehaviour, simulate_parser_traffic
    from kaizend.models.parser.serve import load_parser

    settings = _settings(ctx)
    parser = load_parser(resolve_version(settings, "parser", version))
    asked = sample_traffic(pool(pool_name), queries, seed=seed)
    given = {"noise": noise, "correction_share": correction_share}
    behaviour = UserBehaviour(**{name: value for name, value in given.items() if value is not None})
    latest = max(behaviour.feedback_delay_s[1], behaviour.correction_delay_s[1]) + 60
    events = simulate_parser_traffic(
        asked,
        parser,
        seed=seed,
        model_version=version_label(settings, "parser", version),
        behaviour=behaviour,
        start=datetime.now(UTC) - timedelta(seconds=queries + latest),
    )
    _write_events(out, events)


_ROLE = click.Choice(["service", "worker", "operator", "daemon"])


@cli.group()
def security() -> None:
    """Who may do what on NATS: the roles' permissions, and what credentials reach."""


@security.command(name="permissions")
@click.option("--role", "roles", type=_ROLE, multiple=True, help="Only this role (repeatable).")
@click.pass_context
def security_permissions(ctx: click.Context, roles: tuple[str, ...]) -> None:
    """Print the nats-server `authorization` block for kaizend's roles, from this
    configuration's subjects, streams and bucket (replace the password placeholders)."""
    from kaizend.core.config import ROLES
    from kaizend.handlers.permissions import nats_users_config

    chosen = tuple(role for role in ROLES if not roles or role in roles)
    click.echo(nats_users_config(_settings(ctx), roles=chosen), nl=False)


@security.command(name="check")
@click.option("--role", "roles", type=_ROLE, multiple=True, help="Only this role (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per probe.")
@click.pass_context
def security_check(ctx: click.Context, roles: tuple[str, ...], as_json: bool) -> None:
    """Try each of kaizend's subjects with each role's credentials; report allowed/denied.

    Exit status 1 when a role can do something its permissions do not give it, or cannot do
    something they do (the NATS cluster's permissions differ from `security permissions`).
    """
    from kaizend.core.config import ROLES
    from kaizend.daemon.security import check_role

    settings = _settings(ctx)
    mismatches = 0
    for role in (r for r in ROLES if not roles or r in roles):
        try:
            results = asyncio.run(check_role(settings, role))
        except KaizendError as err:
            click.echo(f"{role}: cannot connect: {err}")
            mismatches += 1
            continue
        for r in results:
            mark = (
                ""
                if r.allowed == r.expected
                else "  <- expected " + ("allowed" if r.expected else "denied")
            )
            mismatches += r.allowed != r.expected
            if as_json:
                click.echo(json.dumps({
                    "role": role, "what": r.probe.what, "action": r.probe.action,
                    "subject": r.probe.subject, "result": r.verdict, "expected": r.expected,
                }))  # fmt: skip
            else:
                click.echo(f"{role:9} {r.verdict:8} {r.probe.what} ({r.probe.action} "
                           f"{r.probe.subject}){mark}")  # fmt: skip
    sys.exit(1 if mismatches else 0)


def main() -> None:
    cli()
