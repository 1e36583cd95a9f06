"""Benchmark: end-to-end ingest rate against a bare nats-py pull consumer, in the same run.

Both measurements have the same shape: a publisher process (this one) sends 100,000 mixed
events (60% query, 30% feedback, 10% correction) with the async JetStream client, while a
consumer process takes them from a stream on the same nats-server:

- kaizend: ``kaizend run`` validates, commits to DuckDB in batches, then acks. The rate runs
  from the first publish to the last row committed (the daemon reports that instant).
- raw: a bare nats-py pull consumer (``fetch(batch)`` then ``ack()`` each message), which
  stores nothing. The rate runs from the first publish to the last ack.

``--during-background`` measures instead what background work costs ingestion, on one data
directory and one nats-server:

- quiet: ``kaizend run`` without background work (no gateway, no automatic training) ingests
  the events;
- busy: ``kaizend run`` with the shipped configuration starts again on that directory, so the
  gateway prepares the retriever's base index (40,194 documents) in its background process,
  and a parser training is queued (the quiet run stored 10,000 corrections). Once both
  processes run, the same number of events is published again. The JSON line gives both
  rates, their ratio, and each background process's niceness and the CPU seconds it used
  during the measurement (evidence that it ran).

Prints one JSON line. Run: ``.venv/bin/python bench/ingest_throughput.py [--events N]
[--during-background]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import ConsumerConfig, StreamConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kaizend.daemon.nats_server import EmbeddedNats  # noqa: E402
from kaizend.handlers.publish import Outgoing, publish_events  # noqa: E402

from bench.record import record  # noqa: E402


def make_events(n: int, prefix: str, tag: str) -> list[Outgoing]:
    """``n`` valid events, 60% query / 30% feedback / 10% correction, as in production."""
    events = []
    for i in range(n):
        bucket = i % 10
        qid = f"{tag}-q{i // 10}"
        ts = "2026-11-23T10:00:00Z"
        if bucket < 6:
            kind, body = (
                "query",
                {
                    "task": "parser",
                    "text": f"wind sites over {100 + i % 900}kw in berkshire",
                    "model_version": "v0",
                    "arm": "champion",
                    "unit_id": f"u{i % 5000}",
                    "output": {
                        "technology": "Wind",
                        "capacity_min_kw": 100 + i % 900,
                        "postcode_patterns": ["RG", "SL"],
                    },
                    "latency_ms": 41.5,
                    "service": "fit-search",
                },
            )
        elif bucket < 9:
            kind, body = "feedback", {"rating": 1 + i % 5, "thumbs": "up" if i % 2 else "down"}
        else:
            kind, body = (
                "correction",
                {"corrected_output": {"technology": "Wind", "capacity_min_kw": 100}},
            )
        event_id = f"{tag}-e{i}"
        payload = {"event_id": event_id, "query_id": qid, "ts": ts, **body}
        events.append(Outgoing(f"{prefix}.{kind}", json.dumps(payload).encode(), event_id))
    return events


async def _request_status(nc: nats.NATS) -> dict:
    reply = await nc.request("kaizen.admin.status", b"{}", timeout=10)
    return json.loads(reply.data)


EVENT_TABLES = ("query_events", "feedback_events", "correction_events")


def _stored(status: dict) -> int:
    return sum(status["counts"][t] for t in EVENT_TABLES)


def start_daemon(url: str, data_dir: Path, **env: str) -> subprocess.Popen:
    """``kaizend run`` on ``data_dir`` against ``url``, with ``KAIZEND_*`` overrides."""
    env = {
        **os.environ,
        "KAIZEND_NATS__URL": url,
        "KAIZEND_DAEMON__DATA_DIR": str(data_dir),
        "KAIZEND_DAEMON__LOG_LEVEL": "WARNING",
        "KAIZEND_STORAGE__EXPORT_INTERVAL_S": "0",
        "KAIZEND_METRICS__PORT": "0",
        **env,
    }
    return subprocess.Popen([sys.executable, "-m", "kaizend.daemon", "run"], cwd=ROOT, env=env)


async def wait_ready(nc: nats.NATS) -> None:
    for _ in range(600):
        try:
            await _request_status(nc)
            return
        except Exception:  # noqa: BLE001 - not ready yet
            await asyncio.sleep(0.1)
    raise RuntimeError("kaizend did not answer within 60 s")


async def ingest(
    nc: nats.NATS, events: list[Outgoing], daemon_pid: int, stored_before: int = 0
) -> dict:
    """Publish ``events`` and wait until the daemon has stored them; the rate runs from the
    first publish to the commit of the last one (the daemon reports that instant)."""
    n = len(events)
    cpu_before = _cpu_and_nice(daemon_pid)
    started = time.time()
    await publish_events(nc.jetstream(), events)
    published = time.time()
    while True:
        # Polled sparingly: answering costs the daemon a count of every table.
        status = await _request_status(nc)
        if _stored(status) >= stored_before + n:
            break
        await asyncio.sleep(0.25)
    finished = status["last_commit_at"]
    cpu_after = _cpu_and_nice(daemon_pid)
    return {
        "events": n,
        "seconds": round(finished - started, 3),
        "events_per_s": round(n / (finished - started)),
        "publish_events_per_s": round(n / (published - started)),
        "rejected": status["counts"]["rejected_events"],
        # The daemon's own process (its background children not included), a few polls
        # after the last commit.
        "consumer_cpu_s": round(cpu_after[0] - cpu_before[0], 2),
    }


async def stop_daemon(daemon: subprocess.Popen) -> None:
    daemon.terminate()
    await asyncio.to_thread(daemon.wait, 60)


async def bench_kaizend(url: str, n: int, workdir: Path) -> dict:
    daemon = start_daemon(url, workdir / "kaizend")
    nc = await nats.connect(url)
    try:
        await wait_ready(nc)
        return await ingest(nc, make_events(n, "kaizen.events", "k"), daemon.pid)
    finally:
        await nc.close()
        await stop_daemon(daemon)


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid``: their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError, IndexError):
            continue
    return {child: cmd.decode(errors="replace") for child, cmd in found.items()}


def _cpu_and_nice(pid: int) -> tuple[float, int] | None:
    """CPU seconds used so far (user + system, its threads included) and the niceness."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[16])


BACKGROUND = {"training": "kaizend.daemon.training_job", "index_build": "kaizend.daemon.prepare"}


async def wait_background(daemon: subprocess.Popen, timeout_s: float = 300) -> dict[str, int]:
    """The pids of the training and the index build, once both run under ``daemon``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        children = _children(daemon.pid)
        pids = {
            name: next((pid for pid, cmd in children.items() if module in cmd), None)
            for name, module in BACKGROUND.items()
        }
        if all(pids.values()):
            return pids  # type: ignore[return-value]
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the training and the index build did not both start: {pids}")


async def bench_during_background(url: str, n: int, workdir: Path) -> dict:
    data_dir = workdir / "kaizend"
    nc = await nats.connect(url)
    try:
        daemon = start_daemon(
            url, data_dir, KAIZEND_GATEWAY__ENABLED="false", KAIZEND_TRAINING__AUTO="false"
        )
        try:
            await wait_ready(nc)
            quiet = await ingest(nc, make_events(n, "kaizen.events", "quiet"), daemon.pid)
        finally:
            await stop_daemon(daemon)
        daemon = start_daemon(url, data_dir)
        try:
            await wait_ready(nc)
            # The trigger would queue it at its first check; asking saves waiting for that.
            await nc.request("kaizen.admin.train", b'{"task": "parser"}', timeout=30)
            pids = await wait_background(daemon)
            before = {name: _cpu_and_nice(pid) for name, pid in pids.items()}
            stored = _stored(await _request_status(nc))
            busy = await ingest(nc, make_events(n, "kaizen.events", "busy"), daemon.pid, stored)
            after = {name: _cpu_and_nice(pid) for name, pid in pids.items()}
        finally:
            await stop_daemon(daemon)
    finally:
        await nc.close()
    background = {}
    for name in pids:
        start, end = before[name], after[name]
        background[name] = {
            "niceness": start[1] if start else None,
            "running_at_end": end is not None,
            "cpu_s_during": round(end[0] - start[0], 1) if start and end else None,
        }
    return {"quiet": quiet, "busy": busy, "background": background}


async def raw_consumer(url: str, n: int, batch: int) -> None:
    """The baseline consumer process: fetch and ack ``n`` messages, print the last ack time."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        "raw.events.>",
        durable="raw",
        stream="RAW",
        config=ConsumerConfig(max_ack_pending=4 * batch),
    )
    print("ready", flush=True)
    cpu_started = time.process_time()
    seen = 0
    while seen < n:
        try:
            msgs = await sub.fetch(batch, timeout=0.2)
        except TimeoutError:  # nats' own, or the builtin one fetch lets escape under load
            continue
        for msg in msgs:
            await msg.ack()
        seen += len(msgs)
    await nc.flush()
    cpu_s = time.process_time() - cpu_started
    print(json.dumps({"last_ack_at": time.time(), "cpu_s": cpu_s}), flush=True)
    await nc.close()


async def bench_raw(url: str, n: int, batch: int) -> dict:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="RAW", subjects=["raw.events.>"], duplicate_window=120))
    consumer = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--raw-consumer",
            url,
            "--events",
            str(n),
            "--batch",
            str(batch),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert consumer.stdout is not None
    assert consumer.stdout.readline().strip() == "ready"
    events = make_events(n, "raw.events", "r")
    started = time.time()
    await publish_events(js, events)
    published = time.time()
    line = await asyncio.to_thread(consumer.stdout.readline)
    consumer.wait(30)
    await nc.close()
    finished = json.loads(line)["last_ack_at"]
    return {
        "events": n,
        "seconds": round(finished - started, 3),
        "events_per_s": round(n / (finished - started)),
        "publish_events_per_s": round(n / (published - started)),
        "consumer_cpu_s": round(json.loads(line)["cpu_s"], 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--raw-consumer", metavar="URL")
    parser.add_argument(
        "--during-background",
        action="store_true",
        help="ingest during a training and an index build against the quiet rate",
    )
    args = parser.parse_args()
    if args.raw_consumer:
        await raw_consumer(args.raw_consumer, args.events, args.batch)
        return
    if args.during_background:
        with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp) / "nats") as server:
            result = await bench_during_background(server.url, args.events, Path(tmp))
        quiet, busy = result["quiet"]["events_per_s"], result["busy"]["events_per_s"]
        record(
            "ingest_during_background",
            {
                "bench": "ingest_during_background",
                "cpus": os.cpu_count(),
                "quiet_events_per_s": quiet,
                "busy_events_per_s": busy,
                "ratio": round(busy / quiet, 3),
                **result,
            },
        )
        return
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp) / "nats") as server:
        kaizend = await bench_kaizend(server.url, args.events, Path(tmp))
        raw = await bench_raw(server.url, args.events, args.batch)
    record(
        "ingest_throughput",
        {
            "bench": "ingest_throughput",
            "cpus": os.cpu_count(),
            "kaizend_events_per_s": kaizend["events_per_s"],
            "raw_events_per_s": raw["events_per_s"],
            "ratio": round(kaizend["events_per_s"] / raw["events_per_s"], 3),
            "kaizend": kaizend,
            "raw": raw,
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
