"""The preparation subprocess: a version's slow first load, away from the event path.

``python -m kaizend.daemon.prepare [--threads N] TASK VERSION``, with the settings as JSON on
stdin (`daemon.background.Preparations` starts it at the background priority).

Loads ``VERSION`` (a built-in name or a version directory) of ``TASK`` once and exits. What
that load persists is what the daemon's own load then finds done: the retriever builds, or
resumes, the version's vector collection. Exit status 0 when done, 1 when it failed (the
traceback on stderr); a stopped one resumes where it was next time.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from pathlib import Path

log = logging.getLogger("kaizend.daemon.prepare")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kaizend.daemon.prepare")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("task")
    parser.add_argument("version")
    args = parser.parse_args(argv)

    from kaizend.core.config import Settings
    from kaizend.daemon.logs import setup_logging
    from kaizend.models.tasks import build_task

    try:
        settings = Settings.model_validate_json(sys.stdin.read())
        setup_logging(settings.daemon.log_level)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        task = build_task(settings, args.task)
        version = args.version if args.version == task.builtin_version else Path(args.version)
        started = time.perf_counter()
        task.load(version)
        log.info("%s %s prepared in %.0f s", args.task, args.version, time.perf_counter() - started)
    except BaseException:  # noqa: BLE001 - reported on stderr and by the exit status
        traceback.print_exc(file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
