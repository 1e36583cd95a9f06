"""False-alarm rates of the drift checks when both windows come from one distribution, and
their detection rates under a shift, at small and large window sizes. Prints one JSON line.

    .venv/bin/python bench/drift_false_alarms.py [--trials 1000]

Each rate is the share of trials that flagged drift; "level" is what the check is configured
to allow (alpha = 0.05 for the tests with a p-value; the distances have fixed thresholds).
The report-level rate comes from whole reports (`models.drift.report.compute`) on two random
samples of the generated FIT queries, with a deterministic stand-in embedder (one random unit
vector per distinct text), so the rate measures the report's statistics, not a model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kaizend.core.config import Settings  # noqa: E402
from kaizend.models.drift import stats  # noqa: E402
from kaizend.models.drift.report import ReportInputs, Window, compute  # noqa: E402
from kaizend.models.fit.drift import FIT_FIELDS  # noqa: E402
from kaizend.models.fit.querygen import generate_examples  # noqa: E402
from kaizend.storage.drift import QueryRow  # noqa: E402

from bench.record import record  # noqa: E402

ALPHA = 0.05
PLACES = np.array([1 / (i + 1) for i in range(400)])
PLACES /= PLACES.sum()


def rate(flags: list[bool]) -> float:
    return round(float(np.mean(flags)), 4)


def categorical(rng: np.random.Generator, trials: int) -> dict:
    out = {}
    for n_ref, n_cur in ((2000, 300), (300, 300), (5000, 5000)):
        chi, psi = [], []
        for _ in range(trials):
            c = stats.align_categories(rng.choice(400, n_ref, p=PLACES),
                                       rng.choice(400, n_cur, p=PLACES))  # fmt: skip
            chi.append(stats.chi_square(c.reference, c.current).p_value < ALPHA)
            psi.append(stats.psi(c.reference, c.current) > 0.1)
        out[f"{n_ref}/{n_cur}"] = {"chi2": rate(chi), "psi": rate(psi)}
    return out


def numeric(rng: np.random.Generator, trials: int) -> dict:
    out = {}
    for n in (200, 5000):
        ks, ws = [], []
        for _ in range(trials):
            ref, cur = rng.lognormal(4, 1, n), rng.lognormal(4, 1, n)
            ks.append(stats.ks(ref, cur).p_value < ALPHA)
            ws.append(stats.normalised_wasserstein(np.log(ref), np.log(cur)) > 0.1)
        out[f"{n}/{n}"] = {"ks": rate(ks), "wasserstein": rate(ws)}
    return out


def embeddings(rng: np.random.Generator, trials: int) -> dict:
    out = {}
    for n in (100, 300):
        threshold = max(0.55, 0.5 + scipy_stats.norm.ppf(1 - ALPHA) * stats.auc_null_sd(n // 2))
        mmd, auc, auc_055 = [], [], []
        for trial in range(trials):
            x, y = rng.normal(size=(n, 32)), rng.normal(size=(n, 32))
            mmd.append(stats.mmd_test(x, y, alpha=ALPHA, seed=trial).p_value < ALPHA)
            score = stats.domain_classifier(x, y, seed=trial).auc
            auc.append(score > threshold)
            auc_055.append(score > 0.55)
        out[f"{n}/{n}"] = {"mmd": rate(mmd), "domain_auc": rate(auc),
                           "domain_auc_fixed_0.55": rate(auc_055),
                           "domain_auc_threshold": round(threshold, 4)}  # fmt: skip
    return out


def cusum(rng: np.random.Generator, trials: int) -> dict:
    p0, h, units = 0.5, 10.0, 10_000
    in_control = [stats.bernoulli_cusum(rng.random(units) < p0, p0, p0 - 0.05).max() > h
                  for _ in range(trials // 4)]  # fmt: skip
    delays = []
    for _ in range(trials // 4):
        path = stats.bernoulli_cusum(rng.random(units) < p0 - 0.08, p0, p0 - 0.05)
        crossed = np.flatnonzero(path > h)
        delays.append(int(crossed[0]) + 1 if len(crossed) else units)
    return {"alarm_within_10000_units_in_control": rate(in_control),
            "median_units_to_alarm_after_a_drop_of_0.08": int(np.median(delays))}  # fmt: skip


def reports(trials: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    pool = generate_examples(seed=seed)
    now = datetime(2026, 11, 30, tzinfo=UTC)
    settings = Settings(drift={"mmd_permutations": 100})

    def embed(texts: list[str]) -> np.ndarray:
        vectors = []
        for text in texts:
            digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
            vector = np.random.default_rng(digest).normal(size=32)
            vectors.append(vector / np.linalg.norm(vector))
        return np.array(vectors)

    def window(n: int, start: datetime, end: datetime) -> Window:
        picked = rng.choice(len(pool), n)
        rows = [QueryRow(f"q{i}", start, pool[i]["text"], json.dumps(pool[i]["expected"]))
                for i in picked]  # fmt: skip
        return Window(start, end, "sample", rows)

    flagged, by_check = [], {}
    for _ in range(trials):
        inputs = ReportInputs(
            task="parser", now=now, reference=window(2000, now - timedelta(days=8),
                                                     now - timedelta(days=1)),
            current=window(300, now - timedelta(days=1), now), performance="not measured",
            volumes=[], fields=FIT_FIELDS, encoder=None,
        )  # fmt: skip
        report = compute(inputs, settings, embed)
        flagged.append(report.input_drift)
        for c in report.checks:
            if c.kind == "input" and c.decisive and c.drifted:
                key = f"{c.field}/{c.method}"
                by_check[key] = by_check.get(key, 0) + 1
    return {"reports_with_input_drift": rate(flagged), "trials": trials,
            "drifted_checks": by_check}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--report-trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    result = {
        "alpha": ALPHA,
        "categorical": categorical(rng, args.trials),
        "numeric": numeric(rng, args.trials),
        "embeddings": embeddings(rng, args.trials // 4),
        "cusum_h10": cusum(rng, args.trials),
        "report_level": reports(args.report_trials, args.seed),
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    record("drift_false_alarms", result)


if __name__ == "__main__":
    main()
