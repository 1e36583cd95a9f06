"""`kaizend drift --html`: one self-contained HTML file with the drift and quality plots.

Every number comes from the stored tables and views (read through the running daemon, or
from the file when it is down); each plot is a matplotlib figure embedded as a base64 PNG,
so the file opens anywhere, offline, and can be mailed around. The plots: each task's
daily success rate per version with the promotions marked (alias_history), the deciding
drift scores over time against their thresholds, the champion's CUSUM against its alarm
level, events per kind and hour, and for every field that drifted in the newest report its
distribution, reference against current; tables of the newest reports, each version's
daily quality (success, corrections, rating, fallbacks, errors, latency p95) and the newest
checks.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kaizend.core.config import Settings
from kaizend.daemon.client import sql_query
from kaizend.daemon.versions import sql_literal

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
td, th { border: 1px solid #ddd; padding: 3px 7px; text-align: left; }
th { background: #f3f3f3; } .drift { color: #b00; font-weight: bold; } .ok { color: #070; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; } .note { color: #666; }
"""


def _rows(settings: Settings, query: str) -> list[dict[str, Any]]:
    result = sql_query(settings, query, None)
    return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def collect(settings: Settings, since: datetime, task: str | None = None) -> dict[str, Any]:
    """The rows the report shows, from the tables and views."""
    task_filter = f"AND task = {sql_literal(task)}" if task else ""
    since_sql = f"TIMESTAMPTZ '{since.isoformat()}'"
    attribution = settings.experiments.attribution_s
    return {
        "quality": _rows(settings, f"""
            SELECT task, model_version, day, queries, success_rate, correction_rate,
                   mean_rating, fallback_rate, error_rate, latency_p95_ms
            FROM daily_quality_at({attribution})
            WHERE day >= CAST(timezone('UTC', {since_sql}) AS DATE) {task_filter}
            ORDER BY task, model_version, day"""),
        "promotions": _rows(settings, f"""
            SELECT task, version_id, assigned_at, reason FROM alias_history
            WHERE alias = 'champion' AND version_id IS NOT NULL {task_filter}
            ORDER BY assigned_at"""),
        "checks": _rows(settings, f"""
            SELECT report_id, task, checked_at, kind, field, method, score, threshold,
                   direction, drifted, decisive FROM drift_checks
            WHERE checked_at >= {since_sql} {task_filter} ORDER BY checked_at"""),
        "reports": _rows(settings, f"""
            SELECT report_id, task, created_at, reference, reference_start, reference_end,
                   n_reference, n_current, input_drift, performance_alarm, action
            FROM drift_reports WHERE created_at >= {since_sql} {task_filter}
            ORDER BY created_at"""),
        "latest": _rows(settings, f"""
            SELECT task, kind, field, method, version_id, n_reference, n_current, score,
                   threshold, direction, drifted, decisive, detail FROM latest_drift
            WHERE true {task_filter} ORDER BY task, kind, field, method"""),
        "volume": _rows(settings, f"""
            SELECT kind, hour, events FROM hourly_volume
            WHERE hour >= timezone('UTC', {since_sql}) ORDER BY hour"""),
    }  # fmt: skip


def _png(figure: Any) -> str:
    """The figure as an <img> with a base64 PNG, and the figure closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _success_plot(task: str, quality: list[dict], promotions: list[dict]) -> str | None:
    import matplotlib.pyplot as plt

    rows = [r for r in quality if r["task"] == task]
    if not rows:
        return None
    figure, axis = plt.subplots(figsize=(10, 3.6))
    for version in sorted({r["model_version"] for r in rows}):
        mine = [r for r in rows if r["model_version"] == version]
        axis.plot([_time(f"{r['day']}T12:00:00") for r in mine],
                  [r["success_rate"] for r in mine], marker="o", markersize=3,
                  label=version)  # fmt: skip
    first = min(_time(f"{r['day']}T00:00:00") for r in rows)
    for promotion in promotions:
        if promotion["task"] != task or _time(promotion["assigned_at"]) < first:
            continue
        moment = _time(promotion["assigned_at"])
        axis.axvline(moment, color="grey", linestyle="--", linewidth=1)
        axis.annotate(
            f"{promotion['version_id']} champion",
            (moment, 1.0),
            fontsize=8,
            rotation=90,
            va="top",
            ha="right",
            xycoords=("data", "axes fraction"),
        )
    axis.set_ylabel("success rate")
    axis.set_title(f"{task}: daily success rate per version (dashed: promotions)")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.autofmt_xdate()
    return _png(figure)


def _drift_plot(task: str, checks: list[dict]) -> str | None:
    import matplotlib.pyplot as plt

    series: dict[tuple[str, str], list[dict]] = {}
    for c in checks:
        if c["task"] == task and c["kind"] == "input" and c["decisive"] and c["score"] is not None:
            series.setdefault((c["field"], c["method"]), []).append(c)
    if not series:
        return None
    columns = 3
    lines = (len(series) + columns - 1) // columns
    figure, axes = plt.subplots(lines, columns, figsize=(11, 2.6 * lines), squeeze=False)
    for axis, ((name, method), rows) in zip(axes.flat, sorted(series.items()), strict=False):
        times = [_time(r["checked_at"]) for r in rows]
        scores = [r["score"] for r in rows]
        axis.plot(times, scores, marker=".", color="tab:blue")
        axis.step(times, [r["threshold"] for r in rows], where="mid", color="tab:red",
                  linestyle="--", linewidth=1)  # fmt: skip
        drifted = [(t, r["score"]) for t, r in zip(times, rows, strict=True) if r["drifted"]]
        if drifted:
            axis.scatter(*zip(*drifted, strict=True), color="tab:red", zorder=3, s=18)
        if rows[0]["direction"] == "below":
            axis.set_yscale("log")  # p-values
        axis.set_title(f"{name} · {method}", fontsize=9)
        axis.tick_params(labelsize=7)
        axis.tick_params(axis="x", rotation=30)
    for axis in list(axes.flat)[len(series) :]:
        axis.set_visible(False)
    figure.suptitle(f"{task}: drift scores (blue) against thresholds (red; red dots drifted)")
    figure.tight_layout()
    return _png(figure)


def _cusum_plot(task: str, latest: list[dict]) -> str | None:
    import matplotlib.pyplot as plt

    check = next((c for c in latest if c["task"] == task and c["kind"] == "performance"
                  and c["score"] is not None), None)  # fmt: skip
    if check is None:
        return None
    detail = _detail(check)
    days = detail.get("daily_max") or []
    if not days:
        return None
    figure, axis = plt.subplots(figsize=(10, 2.8))
    axis.plot([_time(f"{d}T12:00:00") for d, _ in days], [s for _, s in days], marker="o",
              markersize=3, label="CUSUM (daily maximum)")  # fmt: skip
    axis.axhline(detail["h"], color="tab:red", linestyle="--", label=f"alarm at h={detail['h']}")
    axis.set_title(
        f"{task}: {check['version_id']} success-rate CUSUM, baseline {detail['baseline_rate']:.3f}"
        f" (in-control {detail['p0']:.3f}, tuned to {detail['p1']:.3f})"
    )
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.autofmt_xdate()
    return _png(figure)


def _volume_plot(volume: list[dict]) -> str | None:
    import matplotlib.pyplot as plt

    if not volume:
        return None
    figure, axis = plt.subplots(figsize=(10, 3))
    for kind in ("query", "feedback", "correction", "rejected"):
        rows = [r for r in volume if r["kind"] == kind]
        if rows:
            axis.plot([_time(r["hour"]) for r in rows], [r["events"] for r in rows],
                      linewidth=0.8, label=kind)  # fmt: skip
    axis.set_ylabel("events per hour")
    axis.set_title("volume: events per kind and hour (hours without events are gaps)")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.autofmt_xdate()
    return _png(figure)


def _detail(check: dict) -> dict[str, Any]:
    detail = check.get("detail") or {}
    return json.loads(detail) if isinstance(detail, str) else detail


def _distribution_plot(check: dict) -> str | None:
    """The drifted field, reference against current (shares, so sizes compare)."""
    import matplotlib.pyplot as plt
    import numpy as np

    detail = _detail(check)
    title = f"{check['task']} · {check['field']} ({check['method']}): reference vs current"
    if "categories" in detail:
        labels = detail["categories"]
        ref = np.asarray(detail["reference"], float)
        cur = np.asarray(detail["current"], float)
        positions = np.arange(len(labels))
        figure, axis = plt.subplots(figsize=(10, 3.4))
        axis.bar(positions - 0.2, ref / max(ref.sum(), 1), 0.4, label="reference")
        axis.bar(positions + 0.2, cur / max(cur.sum(), 1), 0.4, label="current")
        axis.set_xticks(positions, labels, rotation=60, ha="right", fontsize=7)
        axis.set_ylabel("share")
    elif "edges" in detail or "classifier_scores" in detail:
        histogram = detail.get("classifier_scores") or detail
        edges = np.asarray(histogram["edges"], float)
        ref = np.asarray(histogram["reference"], float)
        cur = np.asarray(histogram["current"], float)
        figure, axis = plt.subplots(figsize=(10, 3))
        for counts, label in ((ref, "reference"), (cur, "current")):
            axis.stairs(counts / max(counts.sum(), 1), edges, label=label, fill=False,
                        linewidth=1.5)  # fmt: skip
        axis.set_ylabel("share")
        if "classifier_scores" in detail:
            axis.set_xlabel("the classifier's probability of 'current' on the held-out halves")
    else:
        return None
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return _png(figure)


def _one_per_field(checks: list[dict]) -> list[dict]:
    """One check per field (a deciding one first): PSI and chi-square share a distribution."""
    chosen: dict[str, dict] = {}
    for check in sorted(checks, key=lambda c: not c["decisive"]):
        chosen.setdefault(check["field"], check)
    return list(chosen.values())


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            css = ""
            if c == "drifted":
                css = ' class="drift"' if value else ' class="ok"'
            cells.append(f"<td{css}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render(data: dict[str, Any], *, since: datetime, generated_at: datetime) -> str:
    """The HTML document."""
    tasks = sorted({r["task"] for key in ("quality", "checks", "reports") for r in data[key]})
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>kaizend drift report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>kaizend: drift and quality report</h1>",
        f"<p class='note'>From {since:%Y-%m-%d %H:%M} UTC to {generated_at:%Y-%m-%d %H:%M} "
        "UTC. Success: positive feedback and no correction within the attribution window; "
        "the newest day is not settled yet.</p>",
    ]
    newest = {r["task"]: r for r in data["reports"]}
    if newest:
        parts.append("<h2>Newest report per task</h2>")
        parts.append(_table(list(newest.values()), ["task", "created_at", "reference",
                     "n_reference", "n_current", "input_drift", "performance_alarm",
                     "action"]))  # fmt: skip
    for task in tasks:
        parts.append(f"<h2>{html.escape(task)}</h2>")
        for plot in (
            _success_plot(task, data["quality"], data["promotions"]),
            _drift_plot(task, data["checks"]),
            _cusum_plot(task, data["latest"]),
        ):
            if plot:
                parts.append(plot)
        quality = [r for r in data["quality"] if r["task"] == task]
        if quality:
            parts.append("<h3>Quality per version, the last 14 days</h3>")
            recent = sorted(quality, key=lambda r: (str(r["day"]), r["model_version"]))[-14:]
            parts.append(_table(recent[::-1], ["day", "model_version", "queries",
                         "success_rate", "correction_rate", "mean_rating", "fallback_rate",
                         "error_rate", "latency_p95_ms"]))  # fmt: skip
        latest = [r for r in data["latest"] if r["task"] == task]
        drifted = _one_per_field([r for r in latest if r["drifted"] and r["kind"] == "input"])
        if drifted:
            parts.append("<h3>Fields that drifted in the newest report</h3>")
            parts.extend(p for p in map(_distribution_plot, drifted) if p)
        if latest:
            parts.append("<h3>Checks of the newest report</h3>")
            parts.append(_table(latest, ["kind", "field", "method", "n_reference",
                         "n_current", "score", "direction", "threshold", "decisive",
                         "drifted"]))  # fmt: skip
    volume = _volume_plot(data["volume"])
    if volume:
        parts.append("<h2>Volume</h2>" + volume)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    settings: Settings, path: Path, *, since: datetime, task: str | None = None
) -> int:
    """Write the HTML report of everything since ``since`` to ``path``; its size in bytes."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    text = render(collect(settings, since, task), since=since, generated_at=datetime.now(UTC))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return len(text.encode())
