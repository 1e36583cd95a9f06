"""`kaizend drift --html` and `kaizend drift` on a simulated month of traffic, read from the
database file (the daemon is down): a real report with its plots, every image decodable."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kaizend.core.config import Settings
from kaizend.models.drift.report import CachedEmbedder, text_encoder
from kaizend.models.fit.month import MonthPlan, daily_reports, load, simulate_month
from kaizend.storage.events import EventStore
from PIL import Image

from tests.conftest import FIT_TASKS_ENV, fit_tasks
from tests.daemon.test_drift import tiny_embedder  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[2]


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KAIZEND_DAEMON__DATA_DIR": str(data_dir),
           **FIT_TASKS_ENV, "KAIZEND_NATS__URL": "", "COLUMNS": "250"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "kaizend.daemon", *args], env=env, cwd=data_dir,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def month_dir(tmp_path_factory: pytest.TempPathFactory, tiny_embedder: Path) -> Path:  # noqa: F811
    """A data directory whose database holds a month of traffic and the reports of its last
    13 days."""
    data_dir = tmp_path_factory.mktemp("month")
    settings = Settings(
        daemon={"data_dir": data_dir},
        tasks=fit_tasks(retriever={"base_model": str(tiny_embedder)}),
        drift={"max_samples": 300, "mmd_permutations": 100, "embedder_task": "retriever"},
    )  # fmt: skip
    plan = MonthPlan(end=datetime.now(UTC).replace(microsecond=0), queries_per_day=150)
    store = EventStore(settings.db_path)
    with store.cursor() as con:
        load(con, simulate_month(plan))
        embed = CachedEmbedder(text_encoder(con, settings))
        daily_reports(con, settings, plan, embed, first_day=plan.days - 12)
    store.close()
    return data_dir


def images(page: str) -> list[Image.Image]:
    found = re.findall(r'<img alt="plot" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)
    decoded = []
    for data in found:
        image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        image.load()  # decodes every pixel: a truncated PNG fails here
        decoded.append(image)
    return decoded


def test_the_html_report_of_a_month_holds_its_plots(month_dir: Path) -> None:
    out = month_dir / "report.html"
    result = cli(month_dir, "drift", "--html", str(out), "--since", "40d")
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # Self-contained: nothing to fetch.
    assert not re.search(r'(src|href)="(http|//)', page)
    plots = images(page)
    # Success per version, drift scores, the CUSUM, one distribution per drifted input check,
    # and the volume.
    drifted = page.split("Fields that drifted in the newest report")[1].split("<h3>")[0]
    assert drifted.count("<img") >= 2
    assert len(plots) == page.count("<img")
    assert len(plots) >= 6
    for image in plots:
        assert image.format == "PNG" and image.width > 400 and image.height > 150
    for text in ("Newest report per task", "Checks of the newest report", "Volume",
                 "training data of parser-v1", "Quality per version",
                 "latency_p95_ms"):  # fmt: skip
        assert text in page
    assert "wrote" in result.stderr and "KiB" in result.stderr


def test_kaizend_drift_prints_the_newest_report_from_the_file(month_dir: Path) -> None:
    result = cli(month_dir, "drift")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "INPUT DRIFT" in out and "PERFORMANCE ALARM" in out
    assert "technology" in out and "cusum" in out and "max_gap_s" in out
    since = cli(month_dir, "drift", "parser", "--since", "3d", "--format", "csv")
    assert since.returncode == 0, since.stderr
    lines = since.stdout.strip().splitlines()
    assert lines[0].startswith("checked,task,kind,field,method")
    assert len({line.split(",")[0] for line in lines[1:]}) >= 3  # three days of reports
    bad = cli(month_dir, "drift", "--since", "last tuesday")
    assert bad.returncode == 2 and "ISO date" in bad.stderr
