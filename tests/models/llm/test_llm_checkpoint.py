"""A parser checkpoint survives a kill at any moment of its save.

A child process saves checkpoints back to back with the real `_save_checkpoint`; the test
freezes it (SIGSTOP) at random moments, which leaves the disk exactly as a kill at that
instant would, and each time loads what is there: always a complete checkpoint, never older
than the one before.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SAVER = """
import sys
from pathlib import Path

import torch

from kaizend.models.fit.parser import load_fit_parser, trained_codec
from kaizend.models.fit.prompt import FitCodec
from tests.conftest import fit_parser_task
from kaizend.models.llm.train import _save_checkpoint

model = torch.nn.Linear(512, 512)
optimizer = torch.optim.AdamW(model.parameters())
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
step = 0
while True:
    step += 1
    _save_checkpoint(Path(sys.argv[1]), model, optimizer, scheduler, {"step": step, "losses": []})
    if step == 1:
        print("saved", flush=True)
"""


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in "Tt"


def test_a_checkpoint_is_complete_whenever_its_writer_stops(tmp_path: Path) -> None:
    import torch

    checkpoint = tmp_path / "checkpoint"
    saver = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(checkpoint)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert saver.stdout is not None and saver.stdout.readline().strip() == "saved"
        rng, last = random.Random(0), 0
        for _ in range(60):
            time.sleep(rng.uniform(0, 0.03))
            os.kill(saver.pid, signal.SIGSTOP)
            deadline = time.monotonic() + 10
            while not _stopped(saver.pid):
                assert time.monotonic() < deadline
                time.sleep(0.001)
            state = torch.load(checkpoint / "state.pt", weights_only=False)
            assert state["step"] >= last and len(state["adapter"]) == 2
            last = state["step"]
            os.kill(saver.pid, signal.SIGCONT)
        assert last > 10, "the freezes should have landed among many saves"
    finally:
        saver.kill()
        saver.wait()
