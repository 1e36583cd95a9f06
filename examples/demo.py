"""`make demo`: the closed loop end to end, unattended, on the embedded defaults.

The daemon starts (with its own nats-server) -> simulated users ask the reference FIT search
service (`examples.fit_service`), which asks the gateway -> their ratings and corrections flow
back -> past the correction threshold the parser retrains in a subprocess -> the candidate
passes the offline gate -> the experiment ramps 10 -> 25 -> 50% and the sequential test
promotes it -> the champion's success rate on live traffic goes up. Then a deliberately worse
challenger (the old rule parser) is put up by hand and rolled back. It ends with a summary
table (versions, metrics before and after, decisions with p-values), the held-out comparison
and the HTML report.

The users ask questions from the user pool (`models.fit.userpool`), written apart from the
parser's training generator, and react as `models.fit.users` says (noisy raters, corrections
for half the wrong parses). Run it with ``python -m examples.demo`` (``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
from kaizend.core.config import load_config
from kaizend.daemon.credentials import role_credentials
from kaizend.handlers.connection import connect_options
from kaizend.handlers.permissions import inbox_prefix
from kaizend.models.fit import userpool
from kaizend.models.fit.users import UserBehaviour, is_right, react
from kaizend_client import InferenceFailed
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from examples.fit_service import FitSearch

ROOT = Path(__file__).resolve().parents[1]
CONFIG = Path(__file__).with_name("demo.toml")
BEHAVIOUR = UserBehaviour(feedback_delay_s=(0.0, 0.0), correction_delay_s=(0.0, 0.0))
"""The pool's users, rating at once (the demo runs in real time)."""

SUCCESS_BY_VERSION = """
SELECT model_version AS version, count(*) AS queries, avg(CAST(success AS DOUBLE)) AS success
FROM query_units({attribution_s})
WHERE task = 'parser' AND arm = 'champion' AND ts >= '{since}' AND ts < '{until}'
GROUP BY ALL ORDER BY version
"""
"""Live success while a version was the champion at 100%: success as the experiments count
it (the ``query_units`` macro of ``storage/schema.sql``)."""


@dataclass
class DemoOptions:
    data_dir: Path = ROOT / "var" / "demo"
    deadline_s: float = 25 * 60
    concurrency: int = 4
    training_rate: float = 1.0
    """Queries per second while the model trains (the CPU is the training's)."""
    after_queries: int = 400
    """Queries at 100% for the new champion, after the promotion."""
    heldout_queries: int = 300
    worse_challenger: bool = True
    show: bool = True
    seed: int = 7


@dataclass
class DemoResult:
    promoted: str | None = None
    promotion: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    rolled_back: str | None = None
    rollback: dict[str, Any] = field(default_factory=dict)
    live: list[dict[str, Any]] = field(default_factory=list)
    heldout: dict[str, dict[str, float]] = field(default_factory=dict)
    versions: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    report: str | None = None

    @property
    def ok(self) -> bool:
        before = self.success("parser-v0")
        after = self.success(self.promoted) if self.promoted else None
        return bool(
            self.promoted and self.rolled_back and before is not None and after is not None
            and after > before
        )  # fmt: skip

    def success(self, version: str | None) -> float | None:
        """Live success rate of ``version`` while it was the champion at 100%."""
        rows = [r for r in self.live if r["version"] == version and r["phase"] == "champion"]
        return rows[0]["success"] if rows else None


class DemoFailed(RuntimeError):
    """The loop did not get where it should within the demo's time."""


# -- the daemon ---------------------------------------------------------------------------


class DaemonProcess:
    """``kaizend run`` in a subprocess on the demo's configuration."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = {**os.environ, "PYTHONPATH": str(ROOT),
                    "KAIZEND_DAEMON__DATA_DIR": str(data_dir)}  # fmt: skip
        self.log = data_dir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def kaizend(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "kaizend.daemon", "--config", str(CONFIG), *args],
            env={**self.env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise DemoFailed(f"kaizend {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    async def start(self) -> str:
        """Start the daemon; return its NATS URL once it answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kaizend.daemon", "--config", str(CONFIG), "run"],
            env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        runtime = self.data_dir / "run" / "daemon.json"
        for _ in range(600):
            if self.proc.poll() is not None:
                raise DemoFailed(f"the daemon exited: see {self.log}")
            if runtime.exists():
                with contextlib.suppress(json.JSONDecodeError):
                    return json.loads(runtime.read_text())["nats_url"]
            await asyncio.sleep(0.2)
        raise DemoFailed(f"the daemon did not start within 120 s: see {self.log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Probe:
    """Read-only questions to the running daemon, over NATS."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc

    async def rows(self, sql: str) -> list[dict[str, Any]]:
        reply = await self.nc.request("kaizen.admin.sql", json.dumps({"sql": sql}).encode(), 30)
        result = json.loads(reply.data)
        if "error" in result:
            raise DemoFailed(f"query failed: {result['error']}")
        return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]

    async def one(self, sql: str) -> dict[str, Any] | None:
        found = await self.rows(sql)
        return found[0] if found else None

    async def control(self, what: str, payload: dict[str, Any]) -> Any:
        reply = await self.nc.request(f"kaizen.admin.{what}", json.dumps(payload).encode(), 30)
        result = json.loads(reply.data)
        if "error" in result:
            raise DemoFailed(f"{what} refused: {result['error']}")
        return result["done"]


# -- the users ----------------------------------------------------------------------------


class Users:
    """Simulated users of the FIT search service, asking from the traffic pool."""

    def __init__(self, service: FitSearch, *, seed: int, concurrency: int) -> None:
        self.service = service
        self.queries = userpool.sample_traffic(userpool.pool("traffic"), 20_000, seed=seed)
        self.seed = seed
        self.concurrency = concurrency
        self.rate: float | None = None
        self.asked = 0
        self.errors = 0
        self._next_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._user()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _pace(self) -> None:
        if self.rate is None:
            return
        now = time.monotonic()
        self._next_at = max(self._next_at + 1.0 / self.rate, now)
        await asyncio.sleep(self._next_at - now)

    async def _user(self) -> None:
        while True:
            await self._pace()
            number = self.asked
            self.asked += 1
            query = self.queries[number % len(self.queries)]
            rng = random.Random(f"{self.seed}:{number}")
            user = f"user-{rng.randrange(5000)}"
            try:
                answer = await self.service.search(query.text, user=user, limit=10)
            except InferenceFailed:
                self.errors += 1
                await asyncio.sleep(0.5)
                continue
            for event in react(query, answer.parse, rng=rng, query_id=answer.query_id,
                               ts=datetime.now(UTC), behaviour=BEHAVIOUR):  # fmt: skip
                if event["kind"] == "feedback":
                    await self.service.rate(
                        answer, rating=event.get("rating"), thumbs=event.get("thumbs")
                    )
                else:
                    await self.service.correct(answer, event["corrected_output"], "sim-user")


# -- the run ------------------------------------------------------------------------------


class Demo:
    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.console = Console(quiet=not options.show)
        self.result = DemoResult()
        self.started = time.monotonic()
        self.phase = "starting"
        self.status = ""
        self.progress = Progress(
            TextColumn("{task.description:<22}"), BarColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), console=self.console,
        )  # fmt: skip
        self.config = load_config(CONFIG)
        self.threshold = self.config.tasks["parser"].triggers.min_new_signal
        self.bars = {
            "corrections": self.progress.add_task("corrections", total=self.threshold, info=""),
            "training": self.progress.add_task("training (steps)", total=None, info=""),
            "ramp": self.progress.add_task("experiment ramp", total=4, info=""),
        }

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _view(self) -> Group:
        line = Text(f"[{self.elapsed() / 60:4.1f} min] {self.phase}: {self.status}")
        return Group(self.progress, line)

    def mark(self, phase: str, message: str) -> None:
        """A phase begins: shown, and its start (seconds into the run) kept by name."""
        self.phase = phase
        self.result.phases[phase] = round(self.elapsed(), 1)
        self.console.log(message)

    async def until(self, what: str, check: Any, live: Live, interval: float = 2.0) -> Any:
        while True:
            found = await check()
            live.update(self._view())
            if found:
                return found
            if self.elapsed() > self.options.deadline_s:
                raise DemoFailed(f"timed out waiting for: {what} ({self.status})")
            await asyncio.sleep(interval)

    async def run(self) -> DemoResult:
        options = self.options
        if options.data_dir.exists():
            shutil.rmtree(options.data_dir)
        daemon = DaemonProcess(options.data_dir)
        url = await daemon.start()
        # Two of the daemon's roles: the operator asks it, the service publishes and infers.
        settings = self.config.model_copy(
            update={"daemon": self.config.daemon.model_copy(update={"data_dir": options.data_dir})}
        )
        operator = await nats.connect(
            url, **connect_options(settings.nats, role_credentials(settings, "operator"),
                                   inbox_prefix("operator")),
        )  # fmt: skip
        nc = await nats.connect(
            url, **connect_options(settings.nats, role_credentials(settings, "service"))
        )
        probe = Probe(operator)
        service = await FitSearch.start(nc)
        users = Users(service, seed=options.seed, concurrency=options.concurrency)
        try:
            with Live(self._view(), console=self.console, refresh_per_second=2) as live:
                await self._loop(daemon, probe, users, live)
        finally:
            await users.stop()
            await service.stop()
            await nc.close()
            await operator.close()
            daemon.stop()
        self.result.elapsed_s = round(self.elapsed(), 1)
        return self.result

    async def _loop(self, daemon: DaemonProcess, probe: Probe, users: Users, live: Live) -> None:
        started_at = datetime.now(UTC)
        self.mark("traffic", "simulated traffic flows (rule parser, version 0)")
        users.start()

        async def training_queued() -> Any:
            stored = await probe.one(
                "SELECT count(*) AS n FROM correction_events"
            )  # fmt: skip
            n = stored["n"] if stored else 0
            self.progress.update(
                self.bars["corrections"], completed=min(n, self.threshold), info=f"{n}"
            )
            self.status = f"{users.asked} queries ({users.errors} errors), {n} corrections stored"
            return await probe.one("SELECT * FROM training_jobs LIMIT 1")

        job = await self.until("the correction threshold", training_queued, live)
        v0_until = datetime.now(UTC)
        self.mark("training", f"corrections past the threshold: training {job['job_id']}")
        users.rate = self.options.training_rate
        max_attempts = self.config.training.max_attempts

        async def trained() -> Any:
            row = await probe.one(
                "SELECT job_id, attempt, state, progress, error, version_id FROM training_jobs "
                "ORDER BY requested_at DESC, attempt DESC LIMIT 1"
            )
            if row and row["progress"]:
                p = json.loads(row["progress"])
                self.progress.update(
                    self.bars["training"], total=p.get("total_steps"), completed=p.get("step"),
                    info=f"loss {p.get('loss', float('nan')):.3f} eta {p.get('eta_s', 0):.0f} s",
                )  # fmt: skip
            self.status = f"training {row['state'] if row else '?'}; {users.asked} queries"
            if row and row["state"] == "failed" and row["attempt"] >= max_attempts:
                raise DemoFailed(f"training {row['job_id']} failed: {row['error']}")
            return row if row and row["state"] == "succeeded" else None

        job = await self.until("the training", trained, live, interval=3.0)
        version = job["version_id"]
        gate = await probe.one(
            f"SELECT passed, reason, checks FROM gate_decisions WHERE version_id = '{version}'"
        )
        self.result.gate = gate or {}
        if not gate or not gate["passed"]:
            raise DemoFailed(f"{version} did not pass the offline gate: {gate}")
        self.mark("gate", f"{version} passed the offline gate: {gate['reason']}")
        users.rate = None

        experiment = await self._experiment(probe, users, live, version)
        if experiment["status"] != "promoted":
            raise DemoFailed(f"experiment ended {experiment['status']}: {experiment['reason']}")
        self.result.promoted = version
        self.result.promotion = await self._last_decision(probe, experiment["experiment_id"])
        self.mark("promoted", f"{version} promoted by the sequential test")

        after_from = datetime.now(UTC)
        target = users.asked + self.options.after_queries

        async def enough_after() -> bool:
            self.status = f"{version} serves 100%: {users.asked}/{target} queries"
            return users.asked >= target

        await self.until("live traffic on the new champion", enough_after, live, 1.0)
        after_until = datetime.now(UTC)
        attribution_s = self.config.experiments.attribution_s
        for since, until in ((started_at, v0_until), (after_from, after_until)):
            query = SUCCESS_BY_VERSION.format(
                attribution_s=attribution_s, since=since.isoformat(), until=until.isoformat()
            )
            self.result.live += [{**row, "phase": "champion"} for row in await probe.rows(query)]

        if self.options.worse_challenger:
            why = "demo: a deliberately worse challenger"
            await probe.control(
                "challenge", {"task": "parser", "version": "parser-v0", "reason": why}
            )
            self.mark(
                "worse challenger", "the rule parser (version 0) injected by hand as challenger"
            )
            worse = await self._experiment(probe, users, live, "parser-v0")
            if worse["status"] != "rolled_back":
                raise DemoFailed(f"the worse challenger's experiment ended {worse['status']}")
            self.result.rolled_back = "parser-v0"
            self.result.rollback = await self._last_decision(probe, worse["experiment_id"])
            self.mark("rolled back", "the worse challenger was rolled back")
        await users.stop()

        self.mark("held out", "held-out comparison")
        self.status = f"{self.options.heldout_queries} held-out questions, version 0 vs {version}"
        live.update(self._view())
        artifact = (await probe.one(
            f"SELECT artifact_path FROM model_versions WHERE version_id = '{version}'"
        ))["artifact_path"]  # fmt: skip
        self.result.heldout = await asyncio.to_thread(
            heldout_comparison, {"parser-v0": "rules", version: artifact},
            self.options.heldout_queries,
        )  # fmt: skip
        self.result.versions = await probe.rows(
            "SELECT version_id, status, status_reason FROM model_versions WHERE task = 'parser' "
            "ORDER BY created_at"
        )
        self.result.decisions = await probe.rows(
            "SELECT e.experiment_id, e.challenger, e.status, d.step, d.weight, d.n_champion, "
            "d.n_challenger, round(d.champion_value, 3) AS champion_success, "
            "round(d.challenger_value, 3) AS challenger_success, round(d.p_value, 6) AS p_value, "
            "d.gate, d.action FROM experiment_decisions d JOIN experiments e USING "
            "(experiment_id) WHERE d.action <> 'hold' ORDER BY d.decided_at"
        )
        self.status = "drift report and HTML"
        live.update(self._view())
        report = self.options.data_dir / "report.html"
        daemon.kaizend("drift", "parser", "--run")  # stored by the daemon, with its plots
        daemon.kaizend("drift", "parser", "--html", str(report))
        self.result.report = str(report) if report.exists() else None
        self.mark("done", "done")

    async def _experiment(self, probe: Probe, users: Users, live: Live, challenger: str) -> Any:
        self.progress.reset(self.bars["ramp"], total=4, info="")

        async def ended() -> Any:
            row = await probe.one(
                "SELECT e.*, (SELECT arg_max(weight, step) FROM experiment_steps s WHERE "
                "s.experiment_id = e.experiment_id) AS share FROM experiments e "
                f"WHERE challenger = '{challenger}' ORDER BY created_at DESC LIMIT 1"
            )
            if row is None:
                self.status = f"waiting for the experiment of {challenger}"
                return None
            last = await self._last_decision(probe, row["experiment_id"], any_action=True)
            share = row["share"] or 0.0
            steps = {0.10: 1, 0.25: 2, 0.50: 3}.get(round(share, 2), 0)
            done = row["status"] not in ("running", "paused")
            self.progress.update(
                self.bars["ramp"], completed=4 if row["status"] == "promoted" else steps,
                info=f"{share:.0%} {row['status']}",
            )  # fmt: skip
            p = f", p={last['p_value']:.3g}" if last and last["p_value"] is not None else ""
            self.status = (
                f"experiment {row['experiment_id']} at {share:.0%}: "
                f"{last['gate'] + ' ' + last['action'] if last else 'starting'}{p}; "
                f"{users.asked} queries"
            )
            return row if done else None

        return await self.until(f"the experiment of {challenger}", ended, live)

    async def _last_decision(
        self, probe: Probe, experiment_id: str, *, any_action: bool = False
    ) -> dict[str, Any]:
        return (
            await probe.one(
                "SELECT step, weight, n_champion, n_challenger, champion_value, "
                "challenger_value, effect, ci_lower, ci_upper, p_value, gate, action, reason "
                f"FROM experiment_decisions WHERE experiment_id = '{experiment_id}' "
                "ORDER BY decided_at DESC LIMIT 1"
            )
            or {}
        )


def heldout_comparison(versions: dict[str, str], n: int) -> dict[str, dict[str, float]]:
    """Each version on the same ``n`` held-out questions, faced by the same simulated users:
    exact match, and success as the experiment counts it."""
    from kaizend.models.fit.parser import load_fit_parser

    questions = userpool.pool("heldout")[:n]
    out = {}
    for version, artifact in versions.items():
        parser = load_fit_parser(artifact)
        right = success = 0
        for number, query in enumerate(questions):
            parsed = parser.answer(query.text).output
            rng = random.Random(f"heldout:{number}")
            events = react(query, parsed, rng=rng, query_id=f"h{number}",
                           ts=datetime.now(UTC), behaviour=BEHAVIOUR)  # fmt: skip
            liked = any(e["kind"] == "feedback" and (e.get("rating", 0) >= 4
                        or e.get("thumbs") == "up") for e in events)  # fmt: skip
            corrected = any(e["kind"] == "correction" for e in events)
            right += is_right(query.expected, parsed)
            success += liked and not corrected
        out[version] = {"exact_match": right / len(questions), "success": success / len(questions)}
    return out


def summary(result: DemoResult, console: Console) -> str:
    """Print the final tables; return them as Markdown (for the README)."""
    lines = []
    live = Table(title="live traffic (the reference service's users), success while champion")
    for column in ("version", "queries", "success"):
        live.add_column(column)
    lines += ["| version | champion's live queries | success |", "|---|---|---|"]
    for row in result.live:
        live.add_row(row["version"], str(row["queries"]), f"{row['success']:.3f}")
        lines.append(f"| {row['version']} | {row['queries']} | {row['success']:.3f} |")
    held = Table(title="held-out questions (pool combinations never trained on)")
    for column in ("version", "exact match", "success"):
        held.add_column(column)
    lines += ["", "| version | held-out exact match | held-out success |", "|---|---|---|"]
    for version, numbers in result.heldout.items():
        held.add_row(version, f"{numbers['exact_match']:.3f}", f"{numbers['success']:.3f}")
        lines.append(f"| {version} | {numbers['exact_match']:.3f} | {numbers['success']:.3f} |")
    decisions = Table(title="experiment decisions (holds left out)")
    columns = ("challenger", "step", "share", "n_champion", "n_challenger", "champion success",
               "challenger success", "p_value", "gate", "action")  # fmt: skip
    for column in columns:
        decisions.add_column(column)
    lines += [
        "",
        "| challenger | step | share | units (champion / challenger) | success (champion / "
        "challenger) | p-value | gate | action |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in result.decisions:
        cells = (
            d["step"], f"{d['weight']:.0%}", d["n_champion"], d["n_challenger"],
            d["champion_success"], d["challenger_success"], d["p_value"], d["gate"], d["action"],
        )  # fmt: skip
        decisions.add_row(d["challenger"], *map(str, cells))
        lines.append(
            f"| {d['challenger']} | {d['step']} | {d['weight']:.0%} | {d['n_champion']} / "
            f"{d['n_challenger']} | {d['champion_success']} / {d['challenger_success']} | "
            f"{d['p_value']} | "
            f"{d['gate']} | {d['action']} |"
        )
    versions = Table(title="versions")
    for column in ("version", "status", "why"):
        versions.add_column(column)
    lines += ["", "| version | status | why |", "|---|---|---|"]
    for v in result.versions:
        versions.add_row(v["version_id"], v["status"], v["status_reason"])
        lines.append(f"| {v['version_id']} | {v['status']} | {v['status_reason']} |")
    for table in (versions, decisions, live, held):
        console.print(table)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--data-dir", type=Path, default=DemoOptions.data_dir)
    parser.add_argument("--no-worse-challenger", action="store_true")
    args = parser.parse_args(argv)
    options = DemoOptions(data_dir=args.data_dir, worse_challenger=not args.no_worse_challenger)
    demo = Demo(options)
    console = demo.console
    try:
        result = asyncio.run(demo.run())
    except DemoFailed as err:
        console.print(f"[red]demo failed:[/red] {err} (daemon log: {options.data_dir}/daemon.log)")
        return 1
    markdown = summary(result, console)
    (options.data_dir / "summary.md").write_text(
        f"{markdown}\n\nRun {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {result.elapsed_s / 60:.1f}"
        " minutes.\n"
    )
    console.print(f"phases (seconds from the start): {result.phases}")
    console.print(f"report: {result.report}; summary: {options.data_dir / 'summary.md'}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
