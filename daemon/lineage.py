"""What made a model version: the lineage `kaizend models show` prints.

Read from the registry, the training jobs, the lineage rows of its training run, the gate
decision and the version directory, through the running daemon or from the database file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kaizend.core.config import Settings
from kaizend.core.errors import KaizendError
from kaizend.daemon.client import sql_query
from kaizend.daemon.versions import sql_literal

Table = dict[str, Any]
"""``{"columns": [...], "rows": [[...], ...]}``, as `kaizend sql` returns."""


def _table(columns: list[str], rows: list[list[Any]]) -> Table:
    return {"columns": columns, "rows": rows}


def _query(settings: Settings, sql: str) -> Table:
    return sql_query(settings, sql, None)


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def _evaluation(metrics: dict[str, Any]) -> Table:
    """One row per evaluation set and metric: candidate next to the champion it faced."""
    rows = []
    for eval_set, pair in metrics.get("evaluation", {}).items():
        candidate, champion = pair.get("candidate", {}), pair.get("champion", {})
        primary = candidate.get("primary_metric")
        names = [primary] if primary else []
        names += [
            name for name, value in candidate.items()
            if name not in (primary, "n") and isinstance(value, int | float)
            and not isinstance(value, bool)
        ]  # fmt: skip
        for name in names:
            rows.append([eval_set, name, _round(candidate.get(name)), _round(champion.get(name))])
    return _table(["eval_set", "metric", "this version", "champion then"], rows)


def version_lineage(settings: Settings, version_id: str) -> list[tuple[str, Table | str]]:
    """Titled sections describing ``version_id``; `KaizendError` when there is no such version."""
    version = sql_literal(version_id)
    record = _query(settings, f"SELECT * FROM model_versions WHERE version_id = {version}")
    if not record["rows"]:
        raise KaizendError(f"no version {version_id!r}: see `kaizend models list`")
    row = dict(zip(record["columns"], record["rows"][0], strict=True))
    metrics = json.loads(row.pop("metrics") or "{}")
    sections: list[tuple[str, Table | str]] = [
        ("version", _table(["field", "value"], [[k, v] for k, v in row.items()]))
    ]
    run = row.get("training_run")
    if run:
        run_literal = sql_literal(run)
        sections.append((f"training run {run}", _query(settings, (
            "SELECT job_id, state, worker, reason, strftime(started_at, '%Y-%m-%d %H:%M:%S') "
            "AS started, round(epoch(finished_at) - epoch(started_at)) AS seconds, "
            "snapshot, error "
            f"FROM training_jobs WHERE run_id = {run_literal} ORDER BY attempt"
        ))))  # fmt: skip
        sections.append(("events it learned from (train) and was judged on (fresh)", _query(
            settings,
            "SELECT role, kind, count(*) AS events, min(event_id) AS first, "
            f"max(event_id) AS last FROM training_events WHERE run_id = {run_literal} "
            "GROUP BY role, kind ORDER BY role DESC, kind",
        )))  # fmt: skip
    training_set = metrics.get("training_set")
    if training_set:
        sections.append(("training set", _table(["field", "value"], [
            [k, json.dumps(v) if isinstance(v, dict) else v] for k, v in training_set.items()
        ])))  # fmt: skip
    artifact = row.get("artifact_path")
    if artifact and (Path(artifact) / "manifest.json").is_file():
        manifest = json.loads((Path(artifact) / "manifest.json").read_text())
        sections.append(
            (
                "manifest",
                f"{manifest.get('count')} training examples, sha256 {manifest.get('sha256')}",
            )
        )
    if artifact and (Path(artifact) / "config.json").is_file():
        config = json.loads((Path(artifact) / "config.json").read_text())
        sections.append(("training config", ", ".join(f"{k}={v}" for k, v in config.items())))
    if metrics.get("evaluation"):
        sections.append(("evaluation", _evaluation(metrics)))
    sections.append(("offline gate", _query(settings, (
        "SELECT strftime(decided_at, '%Y-%m-%d %H:%M:%S') AS decided, champion, passed, "
        "fresh_examples, decided_on, test, round(p_value, 4) AS p_value, reason "
        f"FROM gate_decisions WHERE version_id = {version} ORDER BY decided_at"
    ))))  # fmt: skip
    sections.append(("alias history of the task", _query(settings, (
        "SELECT strftime(assigned_at, '%Y-%m-%d %H:%M:%S') AS assigned_at, alias, version_id, "
        f"reason FROM alias_history WHERE task = {sql_literal(row['task'])} ORDER BY assigned_at"
    ))))  # fmt: skip
    return sections
