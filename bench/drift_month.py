"""A simulated month of parser traffic -> a drift report at the end of every day -> the HTML
report, with the real embedder (all-MiniLM-L6-v2). Prints one JSON line: the days each
report flagged (input drift, performance alarm) against the days the shift covers, the
embedding time, and the HTML report's size.

    .venv/bin/python bench/drift_month.py --out var/bench-drift
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kaizend.core.config import Settings  # noqa: E402
from kaizend.models.drift.report import CachedEmbedder, embedder_dir  # noqa: E402
from kaizend.models.fit.month import MonthPlan, daily_reports, load, simulate_month  # noqa: E402
from kaizend.storage.events import EventStore  # noqa: E402

from bench.record import record  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench-drift")
    parser.add_argument("--queries-per-day", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data_dir = args.out.resolve()
    db = data_dir / "kaizend.duckdb"
    db.unlink(missing_ok=True)
    settings = Settings(daemon={"data_dir": data_dir})
    plan = MonthPlan(end=datetime.now(UTC).replace(minute=0, second=0, microsecond=0),
                     queries_per_day=args.queries_per_day, seed=args.seed)  # fmt: skip
    month = simulate_month(plan)
    store = EventStore(db)
    with store.cursor() as con:
        load(con, month)
        embed = CachedEmbedder(embedder_dir(con, settings))
        started = time.perf_counter()
        reports = daily_reports(con, settings, plan, embed)
        elapsed = time.perf_counter() - started
    store.close()
    html = data_dir / "drift-report.html"
    env = {**os.environ, "KAIZEND_DAEMON__DATA_DIR": str(data_dir), "KAIZEND_NATS__URL": ""}
    subprocess.run([sys.executable, "-m", "kaizend.daemon", "drift", "--html", str(html), "--since",
                    "40d"], check=True, env=env, cwd=ROOT)  # fmt: skip
    shift_from = plan.days - plan.shift_days + 1  # the first report whose window is shifted
    flagged = {
        "input_drift": [d for d, r in enumerate(reports, 1) if r.input_drift],
        "performance_alarm": [d for d, r in enumerate(reports, 1) if r.performance_alarm],
    }
    record("drift_month", {
        "days": plan.days, "queries": month.count("query"), "shifted_reports": list(
            range(shift_from, plan.days + 1)), **flagged,
        "reports_s": round(elapsed, 1), "html": str(html), "html_bytes": html.stat().st_size,
    })  # fmt: skip


if __name__ == "__main__":
    main()
