"""The registry is the source of truth for routing: every experiment tick restores an entry
that was deleted, corrupted or rewritten behind the daemon's back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kaizend.handlers.routing import Routing
from nats.js.errors import KeyNotFoundError

from tests.conftest import eventually, make_settings, run_daemon


async def test_a_deleted_corrupted_or_forged_routing_entry_is_restored_by_the_next_tick(
    tmp_path: Path, nats_server: Any, caplog: Any
) -> None:
    settings = make_settings(
        tmp_path / "data", nats_server.url, experiments={"tick_s": 0.5}, gateway={"enabled": False}
    )
    async with run_daemon(settings) as daemon:
        kv = await daemon.js.key_value(settings.routing.bucket)
        original = Routing.model_validate_json((await kv.get("parser")).value)
        assert original.champion == "parser-v0"

        async def restored() -> bool:
            try:
                entry = await kv.get("parser")
            except KeyNotFoundError:
                return False
            try:
                return Routing.model_validate_json(entry.value) == original
            except ValueError:
                return False

        forged = original.model_copy(
            update={"champion": "parser-v9", "champion_artifact": "/tmp/elsewhere"}
        )
        for damage in ("delete", b"{not json", forged.model_dump_json().encode()):
            if damage == "delete":
                await kv.delete("parser")
            else:
                await kv.put("parser", damage)
            assert not await restored()
            await eventually(restored, timeout=30, interval=0.1)
        assert caplog.text.count("routing of parser restored from the registry") == 3
        assert "the bucket held no entry" in caplog.text
        assert "the bucket held an unreadable entry" in caplog.text

        # An entry that agrees with the registry is not rewritten tick after tick.
        revision = (await kv.get("parser")).revision
        await asyncio.sleep(4 * settings.experiments.tick_s)
        assert (await kv.get("parser")).revision == revision
