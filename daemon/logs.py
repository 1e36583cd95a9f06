"""Logging set-up: one line per record, UTC timestamps, logger name for context."""

from __future__ import annotations

import logging
import time


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler()
    formatter = logging.Formatter(
        "%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Quiet chatty libraries unless debugging.
    if level != "DEBUG":
        for name in ("apscheduler", "nats", "faststream"):
            logging.getLogger(name).setLevel(logging.WARNING)
