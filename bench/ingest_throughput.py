"""Benchmark: end-to-end ingest rate against a bare nats-py pull consumer, in the same run.

Both measurements have the same shape: a publisher process (this one) sends 100,000 mixed
events (60% query, 30% feedback, 10% correction) with the async JetStream client, while a
consumer process takes them from a stream on the same nats-server:

- kaizend: ``kaizend run`` validates, commits to DuckDB in batches, then acks. The rate runs
  from the first publish to the last row committed (the daemon reports that instant).
- raw: a bare nats-py pull consumer (``fetch(batch)`` then ``ack()`` each message), which
  stores nothing. The rate runs from the first publish to the last ack.

Prints one JSON line. Run: ``.venv/bin/python bench/ingest_throughput.py [--events N]``.
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


async def bench_kaizend(url: str, n: int, workdir: Path) -> dict:
    env = {
        **os.environ,
        "KAIZEND_NATS__URL": url,
        "KAIZEND_DAEMON__DATA_DIR": str(workdir / "kaizend"),
        "KAIZEND_DAEMON__LOG_LEVEL": "WARNING",
        "KAIZEND_STORAGE__EXPORT_INTERVAL_S": "0",
        "KAIZEND_METRICS__PORT": "0",
    }
    daemon = subprocess.Popen([sys.executable, "-m", "kaizend.daemon", "run"], cwd=ROOT, env=env)
    nc = await nats.connect(url)
    try:
        for _ in range(300):
            try:
                await _request_status(nc)
                break
            except Exception:  # noqa: BLE001 - not ready yet
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError("kaizend did not answer within 30 s")
        events = make_events(n, "kaizen.events", "k")
        started = time.time()
        await publish_events(nc.jetstream(), events)
        published = time.time()
        while True:
            status = await _request_status(nc)
            if (
                sum(
                    status["counts"][t]
                    for t in ("query_events", "feedback_events", "correction_events")
                )
                >= n
            ):
                break
            await asyncio.sleep(0.05)
        finished = status["last_commit_at"]
        return {
            "events": n,
            "seconds": round(finished - started, 3),
            "events_per_s": round(n / (finished - started)),
            "publish_events_per_s": round(n / (published - started)),
            "rejected": status["counts"]["rejected_events"],
        }
    finally:
        await nc.close()
        daemon.terminate()
        daemon.wait(30)


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
    seen = 0
    while seen < n:
        try:
            msgs = await sub.fetch(batch, timeout=0.2)
        except nats.errors.TimeoutError:
            continue
        for msg in msgs:
            await msg.ack()
        seen += len(msgs)
    await nc.flush()
    print(json.dumps({"last_ack_at": time.time()}), flush=True)
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
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--raw-consumer", metavar="URL")
    args = parser.parse_args()
    if args.raw_consumer:
        await raw_consumer(args.raw_consumer, args.events, args.batch)
        return
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp) / "nats") as server:
        kaizend = await bench_kaizend(server.url, args.events, Path(tmp))
        raw = await bench_raw(server.url, args.events, args.batch)
    print(
        json.dumps(
            {
                "bench": "ingest_throughput",
                "cpus": os.cpu_count(),
                "kaizend_events_per_s": kaizend["events_per_s"],
                "raw_events_per_s": raw["events_per_s"],
                "ratio": round(kaizend["events_per_s"] / raw["events_per_s"], 3),
                "kaizend": kaizend,
                "raw": raw,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
