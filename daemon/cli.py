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
@click.argument("name", required=False)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the files (or NAME) into this directory instead of printing.",
)
@click.option(
    "--defaults",
    is_flag=True,
    help="Describe the built-in defaults (what schemas/ in the repository holds), not this "
    "configuration's subjects.",
)
@click.pass_context
def schemas(ctx: click.Context, name: str | None, out: Path | None, defaults: bool) -> None:
    """The event contract: JSON Schemas of the events, of an inference request and its
    replies and of a routing entry, and the AsyncAPI document of kaizend's NATS interface.
    Prints NAME (query-event, asyncapi, ...); without NAME or --out, lists the names."""
    from kaizend.handlers.asyncapi import builtin_settings, contract_files

    files = contract_files(builtin_settings() if defaults else _settings(ctx))
    if name is not None:
        chosen = name if name in files else f"{name}.json"
        if chosen not in files:
            raise click.BadParameter(
                f"{name!r} is none of {', '.join(n.removesuffix('.json') for n in files)}",
                param_hint="NAME",
            )
        files = {chosen: files[chosen]}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for file, text in files.items():
            (out / file).write_text(text)
            click.echo(out / file)
    elif name is not None:
        click.echo(files[chosen], nl=False)
    else:
        click.echo("\n".join(file.removesuffix(".json") for file in files))


_version_option = click.option(
    "--model",
    "version",
    default="champion",
    show_default=True,
    help="The built-in version 0, champion, challenger, a version id, or a version directory.",
)


def _set_option(name: str, help: str) -> Any:  # noqa: A002 - click's word
    """``--set KEY=VALUE``, repeatable, into the parameter ``name`` (read with `_pairs`)."""
    return click.option("--set", name, multiple=True, metavar="KEY=VALUE", help=help)


@cli.command()
@click.argument("task")
@_version_option
@click.pass_context
def predict(ctx: click.Context, task: str, version: str) -> None:
    """Answer queries from stdin (plain lines, or JSONL with a "text") with a version of
    TASK; write JSONL {text, output, fallback_used, latency_ms}, one line per query."""
    import time as _time

    from kaizend.daemon.versions import resolve_version

    settings = _settings(ctx)
    predictor = _task(settings, task).load(resolve_version(settings, task, version))
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
        started = _time.perf_counter()
        [answer] = predictor.predict([text])
        latency_ms = round((_time.perf_counter() - started) * 1000, 2)
        click.echo(json.dumps({"text": text, "output": answer.output,
                               "fallback_used": answer.fallback_used,
                               "latency_ms": latency_ms}))  # fmt: skip


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
    """Versions on the Ollama server (ollama.url), for the tasks whose kind Ollama serves."""


@ollama.command(name="publish")
@click.argument("version_id")
@click.pass_context
def ollama_publish(ctx: click.Context, version_id: str) -> None:
    """Create (or replace) the Ollama model of a version: after a publication that failed
    at promotion, or to try a candidate through Ollama before promoting it."""
    from kaizend.daemon.client import sql_query
    from kaizend.daemon.versions import sql_literal
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
    record = VersionRecord(**values)
    publication = _task(settings, record.task).publish_to_ollama(settings, record)
    if publication is None:
        raise click.ClickException(
            f"{version_id} has nothing Ollama serves (its task's kind, or a version 0)"
        )
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
@click.argument("task")
@click.argument("version")
@_reason_option
@click.pass_context
def promote(ctx: click.Context, task: str, version: str, reason: str) -> None:
    """Make VERSION the task's champion now (an experiment of the task ends)."""
    _control(_settings(ctx), "promote", {"task": task, "version": version, "reason": reason})
    click.echo(f"{version} is the {task} champion")


@cli.command()
@click.argument("task")
@click.argument("version")
@_reason_option
@click.pass_context
def challenge(ctx: click.Context, task: str, version: str, reason: str) -> None:
    """Make VERSION the task's challenger by hand (no offline gate): an experiment starts."""
    _control(_settings(ctx), "challenge", {"task": task, "version": version, "reason": reason})
    click.echo(f"{version} is the {task} challenger; its experiment starts at the next tick")


@cli.command()
@click.argument("task")
@_reason_option
@click.pass_context
def rollback(ctx: click.Context, task: str, reason: str) -> None:
    """Roll back the task: a running experiment's challenger, else the champion to the
    previous one."""
    serving = _control(_settings(ctx), "rollback", {"task": task, "reason": reason})
    click.echo(f"rolled back: {serving} serves {task}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON line per task and kind.")
@click.pass_context
def tasks(ctx: click.Context, as_json: bool) -> None:
    """The installed task kinds and the declared tasks, with their champions."""
    from kaizend.daemon.client import current_champions
    from kaizend.models.kinds import installed_kinds
    from kaizend.models.tasks import build_tasks

    settings = _settings(ctx)
    built = build_tasks(settings)  # every declaration checked against its kind
    champions = current_champions(settings)
    kinds = installed_kinds()
    rows = [["task", name, settings.tasks[name].kind, task.primary_metric,
             champions.get(name, f"{name}-v0 (not started yet)")]
            for name, task in built.items()]  # fmt: skip
    rows += [["kind", name, kind.summary, "", ""] for name, kind in sorted(kinds.items())]
    columns = ["what", "name", "kind", "primary_metric", "champion"]
    _emit({"columns": columns, "rows": rows}, "json" if as_json else "table")


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
@click.argument("task")
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
@click.argument("task")
@click.pass_context
def examples(ctx: click.Context, task: str) -> None:
    """Write the task's benchmark examples as JSONL, in the shape `kaizend eval` reads."""
    for example in _task(_settings(ctx), task).benchmark_examples():
        click.echo(json.dumps(example))


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


def _with_overrides(settings: Settings, task: str, overrides: tuple[str, ...]) -> Settings:
    """``settings`` with ``KEY=VALUE`` overrides of the task's kind settings (a value is read
    as TOML, so ``max_steps=200`` is a number and ``profile=full`` a string)."""
    if not overrides:
        return settings
    declaration = {**settings.tasks[task].model_dump(), **_pairs(overrides)}
    return Settings.model_validate({**settings.model_dump(), "tasks": {
        **settings.model_dump()["tasks"], task: declaration}})  # fmt: skip


@cli.command()
@click.argument("task")
@_set_option(
    "overrides",
    "With --here: override one of the task's kind settings for this training (for "
    "example --set profile=full); repeatable.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="With --here: the version directory (default: <data_dir>/models/<task>/manual-<time>); "
    "an unfinished one resumes from its checkpoint.",
)
@click.option(
    "--model",
    "serving",
    default=None,
    help="With --here: the version production serves now (champion by default); tasks that "
    "mine hard negatives mine them from it.",
)
@_here_option
@click.pass_context
def train(
    ctx: click.Context,
    task: str,
    overrides: tuple[str, ...],
    out: Path | None,
    serving: str | None,
    here: bool,
) -> None:
    """Train TASK now: a job queued by the running daemon (threshold and cooldown skipped),
    or with --here in this process, from the stored events and the task's own data."""
    import time as _time

    from kaizend.daemon.logs import setup_logging
    from kaizend.daemon.versions import resolve_version

    settings = _settings(ctx)
    _task(settings, task)  # an undeclared task fails here, naming the declared ones
    if _queue_training(settings, task, here, set=overrides or None, out=out, model=serving):
        return
    setup_logging(settings.daemon.log_level)
    settings = _with_overrides(settings, task, overrides)
    version = resolve_version(settings, task, serving or "champion")
    built = _task(settings, task, serving=version)
    out = out or settings.path(Path("models") / task / _time.strftime("manual-%Y%m%dT%H%M%S"))
    training_set = built.build_training_set(_offline_events(settings))
    click.echo(
        f"training on {len(training_set.train)} examples, validating on "
        f"{len(training_set.validation)} ({_signal(training_set)})",
        err=True,
    )
    click.echo(str(built.train(training_set, out, progress_bar=True)))


def _signal(training_set: Any) -> str:
    counts = {kind: len(ids) for kind, ids in training_set.event_ids.items() if ids}
    described = ", ".join(f"{n} stored {kind} events" for kind, n in counts.items())
    return described or "no stored events"


def _task(settings: Settings, name: str, **options: Any) -> Any:
    """The declared task ``name``, with progress bars where its kind shows them."""
    from dataclasses import is_dataclass, replace

    from kaizend.models.tasks import build_task

    task = build_task(settings, name, **options)
    if is_dataclass(task) and hasattr(task, "progress_bar"):
        task = replace(task, progress_bar=True)
    return task


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
    from kaizend.models.task import PER_EXAMPLE, SOURCES

    shown = [[k, v] for k, v in report.items() if k not in (PER_EXAMPLE, SOURCES)]
    _emit({"columns": ["metric", "value"], "rows": shown}, "table")


@cli.command(name="eval")
@click.argument("task")
@_version_option
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSONL of examples in the task's shape (default: its benchmark; `kaizend examples "
    "TASK` writes it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@_set_option(
    "overrides",
    "Override one of the task's kind settings (repeatable), for example "
    "--set constrained=false to compare the parser's free decoding.",
)
@click.pass_context
def eval_command(
    ctx: click.Context,
    task: str,
    version: str,
    data: Path | None,
    as_json: bool,
    overrides: tuple[str, ...],
) -> None:
    """Evaluate a version of TASK with the task's evaluator (its primary metric first)."""
    from kaizend.daemon.versions import resolve_version

    settings = _with_overrides(_settings(ctx), task, overrides)
    built = _task(settings, task)
    try:
        examples = built.load_examples(data) if data else built.benchmark_examples()
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    report = built.evaluate(resolve_version(settings, task, version), examples)
    _print_report(report, as_json)


@cli.command()
@click.argument("task")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File (stdout)."
)
@click.option(
    "--model",
    "serving",
    default="champion",
    show_default=True,
    help="The version production serves (tasks that mine hard negatives mine them from it).",
)
@click.option(
    "--fresh-share",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help="Hold back the newest share of the signal as the gate would (default: "
    "training.fresh_share, or the task's gate override).",
)
@_set_option(
    "overrides", "Override one of the task's kind settings (repeatable), as `kaizend train` does."
)
@click.pass_context
def dataset(
    ctx: click.Context,
    task: str,
    out: Path | None,
    serving: str,
    fresh_share: float | None,
    overrides: tuple[str, ...],
) -> None:
    """Export the training set TASK would train on now, from the stored events, as JSONL
    {split, example} (split: train, validation, fresh), for inspection."""
    from kaizend.daemon.versions import resolve_version

    settings = _with_overrides(_settings(ctx), task, overrides)
    built = _task(settings, task, serving=resolve_version(settings, task, serving))
    share = settings.for_task(task).training.fresh_share if fresh_share is None else fresh_share
    training_set = built.build_training_set(_offline_events(settings), fresh_share=share)
    lines = [
        json.dumps({"split": split, "example": example}, default=str)
        for split in ("train", "validation", "fresh")
        for example in getattr(training_set, split)
    ]
    text = "".join(line + "\n" for line in lines)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
    skipped = f", skipped {dict(training_set.skipped)}" if training_set.skipped else ""
    click.echo(
        f"{len(training_set.train)} train, {len(training_set.validation)} validation, "
        f"{len(training_set.fresh)} fresh examples ({_signal(training_set)}){skipped}",
        err=True,
    )


@cli.command()
@click.argument("task")
@click.option("--queries", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="JSONL of events with a kind, for `kaizend publish`.",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--model",
    "version",
    default="champion",
    show_default=True,
    help="The version that answers the simulated users.",
)
@_set_option(
    "options",
    "An option of the kind's simulation (repeatable; the FIT parser's: pool=traffic|"
    "heldout, noise=0.1, correction_share=0.5).",
)
@click.pass_context
def simulate(
    ctx: click.Context, task: str, queries: int, out: Path, seed: int, version: str,
    options: tuple[str, ...],
) -> None:  # fmt: skip
    """Simulated users of TASK: queries answered by a version, rated and sometimes corrected,
    written as events for `kaizend publish` (for kinds that come with a simulation)."""
    from kaizend.daemon.versions import resolve_version, version_label

    settings = _settings(ctx)
    built = _task(settings, task)
    resolved = resolve_version(settings, task, version)
    try:
        events = built.simulate_traffic(
            built.load(resolved), queries=queries, seed=seed,
            model_version=version_label(settings, task, version), options=_pairs(options),
        )  # fmt: skip
    except ValueError as err:
        raise click.ClickException(f"{task}: {err}") from err
    if events is None:
        raise click.ClickException(f"the kind of {task} has no simulated users")
    with out.open("w") as lines:
        for item in events:
            lines.write(json.dumps(item) + "\n")
    counts = {
        kind: sum(e["kind"] == kind for e in events) for kind in ("query", "feedback", "correction")
    }
    click.echo(f"wrote {len(events)} events to {out}: {counts}", err=True)


def _pairs(items: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` options, each value read as TOML (a number, a boolean) or kept a string."""
    import tomllib

    values: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.UsageError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            values[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            values[key.strip()] = value
    return values


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
