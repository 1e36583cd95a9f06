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

from core import __version__
from core.config import Settings, load_config
from core.errors import DaemonTimeout, DaemonUnavailable, KaizendError


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
    from daemon.app import Daemon
    from daemon.logs import setup_logging

    settings = _settings(ctx)
    setup_logging(settings.daemon.log_level)
    sys.exit(asyncio.run(Daemon(settings).run()))


def _request(settings: Settings, what: str, payload: dict[str, Any]) -> dict[str, Any]:
    from daemon.client import request_daemon

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
        from daemon.client import read_status_offline

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
    from daemon.client import sql_query

    _emit(sql_query(_settings(ctx), query, max_rows), fmt)


_model_option = click.option(
    "--model",
    "version",
    default="champion",
    show_default=True,
    help="rules, champion, challenger, a version id, or a version directory.",
)


def _read_events(path: Path, prefix: str) -> Iterator[Any]:
    from handlers.publish import KINDS, Outgoing

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
    from daemon.client import publish_file

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
    from daemon.versions import resolve_version
    from models.parser.serve import load_parser

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


@cli.group()
def models() -> None:
    """The model registry: versions, their status and the alias history."""


@models.command(name="list")
@click.option("--task", default=None, help="Only this task's versions.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
def models_list(ctx: click.Context, task: str | None, fmt: str) -> None:
    """Every version with its status and why it last changed."""
    from daemon.client import sql_query
    from daemon.versions import sql_literal

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
    """One version: its record, its alias history and, for a trained one, its directory."""
    from daemon.client import sql_query
    from daemon.versions import sql_literal

    settings = _settings(ctx)
    record = sql_query(
        settings, f"SELECT * FROM model_versions WHERE version_id = {sql_literal(version_id)}", 1
    )
    if not record["rows"]:
        raise click.ClickException(f"no version {version_id!r}: see `kaizend models list`")
    row = dict(zip(record["columns"], record["rows"][0], strict=True))
    _emit({"columns": ["field", "value"], "rows": [[k, v] for k, v in row.items()]}, "table")
    history = sql_query(
        settings,
        "SELECT strftime(assigned_at, '%Y-%m-%d %H:%M:%S') AS assigned_at, alias, version_id, "
        f"reason FROM alias_history WHERE task = {sql_literal(row['task'])} "
        "ORDER BY assigned_at",
        None,
    )
    click.echo("alias history of the task:")
    _emit(history, "table")
    artifact = row.get("artifact_path")
    if artifact and (Path(artifact) / "manifest.json").is_file():
        manifest = json.loads((Path(artifact) / "manifest.json").read_text())
        click.echo(f"trained on {manifest['count']} examples (sha256 {manifest['sha256']})")


@cli.command()
@click.argument("task", type=click.Choice(["parser"]))
@click.option(
    "--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
def examples(task: str, split: str, seed: int) -> None:
    """Write a split of the generated examples as JSONL {id, text, expected, category}."""
    from models.fit.querygen import generate_examples, split_examples

    for example in split_examples(generate_examples(seed=seed), seed=seed)[split]:
        click.echo(json.dumps(example))


@cli.group()
def train() -> None:
    """Train a new version in the foreground (the daemon's own training jobs come later)."""


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
@click.pass_context
def train_parser_command(ctx: click.Context, profile: str | None, out: Path | None) -> None:
    """Generated FIT examples plus the stored corrections -> a LoRA adapter version."""
    import time as _time

    from daemon.logs import setup_logging
    from models.parser.base import ensure_base
    from models.parser.config import profile as training_profile
    from models.parser.task import ParserTask

    settings = _settings(ctx)
    setup_logging(settings.daemon.log_level)
    task = ParserTask(
        config=training_profile(profile or settings.parser.profile),
        base_path=ensure_base(settings.daemon.data_dir, settings.parser.base_model or None),
        correction_weight=settings.parser.correction_weight,
    )
    out = out or settings.path(Path("models/parser") / _time.strftime("manual-%Y%m%dT%H%M%S"))
    training_set = task.build_training_set(_offline_events(settings))
    click.echo(
        f"training on {len(training_set.train)} examples "
        f"({len(training_set.event_ids.get('correction', []))} stored corrections)",
        err=True,
    )
    version = task.train(training_set, out, progress_bar=True)
    click.echo(str(version))


def _offline_events(settings: Settings) -> Any:
    """The event store opened read-only, or an empty in-memory one when there is none."""
    import duckdb

    from core.errors import StorageError
    from daemon.client import open_offline
    from storage.events import apply_schema

    try:
        return open_offline(settings)
    except StorageError as err:
        click.echo(f"no stored events used: {err}", err=True)
        con = duckdb.connect()
        apply_schema(con)
        return con


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
@click.pass_context
def eval_parser(ctx: click.Context, version: str, data: Path, as_json: bool) -> None:
    """JSON-valid rate, exact match, field accuracy, fallback rate, latency p50/p95, ..."""
    from daemon.versions import resolve_version
    from models.parser.evaluate import evaluate, load_examples
    from models.parser.serve import load_parser

    try:
        examples = load_examples(data)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    report = evaluate(load_parser(resolve_version(_settings(ctx), "parser", version)), examples)
    if as_json:
        click.echo(json.dumps(report))
        return
    _emit({"columns": ["metric", "value"], "rows": [[k, v] for k, v in report.items()]}, "table")


def main() -> None:
    cli()
