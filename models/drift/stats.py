"""Drift statistics: pure functions over two samples, a reference and a current one.

Everything here takes arrays (numpy, or anything ``np.asarray`` accepts) and returns numbers,
so each function can be checked against published values and used outside kaizend. scipy
provides the tests, scikit-learn the classifier (imported inside the function that needs it).

Categorical fields

- `align_categories`: the two samples as counts over one set of categories: the
  ``max_categories - 1`` values most frequent in both samples together, everything else
  pooled as ``"(other)"`` (so rare and new values, such as unseen place names, still count).
- `psi`: population stability index, ``sum((c - r) * ln(c / r))`` over the category shares
  ``r`` (reference) and ``c`` (current), empty shares replaced by ``epsilon``. Rules of thumb
  (Siddiqi 2006, *Credit Risk Scorecards*): below 0.1 stable, 0.1-0.25 a moderate shift,
  above 0.25 a major one. Its expectation under no drift grows like
  ``(k - 1) * (1/n_ref + 1/n_cur)``, so on small windows it flags noise: use the test.
- `chi_square`: Pearson's test of homogeneity on the 2 x k table (no continuity correction),
  categories with an expected count under 5 pooled first so the chi-square approximation holds.

Numeric fields

- `ks`: the two-sample Kolmogorov-Smirnov test (exact for small samples, asymptotic else).
- `normalised_wasserstein`: the earth mover's distance between the two empirical
  distributions divided by the reference's standard deviation: "how many standard deviations
  the mass moved". Scale-free, and on large windows it ignores differences too small to
  matter that a test would still call significant.

Embeddings

- `mmd_test`: the unbiased estimate of the squared maximum mean discrepancy with a Gaussian
  kernel whose bandwidth is the median pairwise distance (Gretton et al. 2012, *A Kernel
  Two-Sample Test*, JMLR 13), and its permutation test: the threshold is the ``1 - alpha``
  quantile of the statistic over random relabellings of the pooled sample, so the test holds
  its level at any window size.
- `domain_classifier`: a classifier two-sample test (Lopez-Paz & Oquab 2017, *Revisiting
  Classifier Two-Sample Tests*, ICLR; for drift, Rabanser et al. 2019, *Failing Loudly*,
  NeurIPS): a logistic regression trained on half of each sample to tell them apart, and
  its ROC-AUC on the other halves, 0.5 when both come from one distribution, growing with the
  shift. Scored on held-out data by one fixed model, the AUC is a Mann-Whitney statistic, so
  its no-drift spread is known exactly (`auc_null_sd`); cross-validation would pool the
  scores of several models and widen that spread by an unknown amount.

Sequential monitoring

- `bernoulli_cusum`: Page's CUSUM of the log-likelihood ratio of a success rate ``p1`` against
  the in-control ``p0`` (Reynolds & Stoumbos 1999, *A CUSUM chart for monitoring a proportion
  when inspecting continuously*, J. Quality Technology 31): ``S_t = max(0, S_{t-1} + w_t)``
  with ``w_t = x_t ln(p1/p0) + (1 - x_t) ln((1 - p1)/(1 - p0))``. An alarm when ``S_t > h``;
  under ``p0`` the average run to a false alarm is at least ``e^h`` units (the Wald bound),
  whatever the number of looks, so it can be checked after every unit.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from kaizend.core.errors import StatisticsError
from scipy import stats as scipy_stats

OTHER = "(other)"


@dataclass(frozen=True)
class Categories:
    """Two samples as counts over the same categories."""

    labels: tuple[str, ...]
    reference: np.ndarray
    current: np.ndarray


def align_categories(
    reference: Sequence[Hashable], current: Sequence[Hashable], *, max_categories: int = 50
) -> Categories:
    """Count both samples over their most frequent values (and ``(other)``)."""
    if max_categories < 2:
        raise StatisticsError("max_categories", "max_categories must be at least 2")
    ref_counts = Counter(str(v) for v in reference)
    cur_counts = Counter(str(v) for v in current)
    # Chosen on the pooled counts: picking them by one sample's frequencies would bias the
    # test towards drift (that sample's noise decides what is pooled).
    pooled = ref_counts + cur_counts
    labels = sorted(pooled, key=lambda v: (-pooled[v], v))[: max_categories - 1]
    ref = [ref_counts[v] for v in labels]
    cur = [cur_counts[v] for v in labels]
    rest_ref = sum(ref_counts.values()) - sum(ref)
    rest_cur = sum(cur_counts.values()) - sum(cur)
    if rest_ref or rest_cur:
        labels.append(OTHER)
        ref.append(rest_ref)
        cur.append(rest_cur)
    return Categories(tuple(labels), np.asarray(ref, float), np.asarray(cur, float))


def _counts(reference: Any, current: Any) -> tuple[np.ndarray, np.ndarray]:
    ref, cur = np.asarray(reference, float), np.asarray(current, float)
    if ref.shape != cur.shape or ref.ndim != 1:
        raise StatisticsError("counts", "reference and current counts need the same categories")
    if (ref < 0).any() or (cur < 0).any():
        raise StatisticsError("counts", "counts cannot be negative")
    if ref.sum() == 0 or cur.sum() == 0:
        raise StatisticsError("counts", "each sample needs at least one observation")
    return ref, cur


def psi(reference_counts: Any, current_counts: Any, *, epsilon: float = 1e-4) -> float:
    """Population stability index of the current category shares against the reference's."""
    ref, cur = _counts(reference_counts, current_counts)
    r = np.maximum(ref / ref.sum(), epsilon)
    c = np.maximum(cur / cur.sum(), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


@dataclass(frozen=True)
class TestResult:
    statistic: float
    p_value: float


def _pool_sparse(table: np.ndarray, min_expected: float) -> np.ndarray:
    """Merge the sparsest column of a 2 x k table into the smallest other one until every
    expected count reaches ``min_expected`` (or two columns are left)."""
    table = table[:, table.sum(axis=0) > 0]
    while table.shape[1] > 2:
        expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
        sparsest = int(np.argmin(expected.min(axis=0)))
        if expected[:, sparsest].min() >= min_expected:
            break
        sizes = table.sum(axis=0).astype(float)
        sizes[sparsest] = np.inf
        into = int(np.argmin(sizes))
        table[:, into] += table[:, sparsest]
        table = np.delete(table, sparsest, axis=1)
    return table


def chi_square(
    reference_counts: Any, current_counts: Any, *, min_expected: float = 5.0
) -> TestResult:
    """Pearson's chi-square test that both samples share one categorical distribution."""
    ref, cur = _counts(reference_counts, current_counts)
    table = _pool_sparse(np.vstack([ref, cur]), min_expected)
    if table.shape[1] < 2:
        return TestResult(0.0, 1.0)
    statistic, p_value, _, _ = scipy_stats.chi2_contingency(table, correction=False)
    return TestResult(float(statistic), float(p_value))


def _sample(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, float).ravel()
    if array.size == 0:
        raise StatisticsError(name, f"{name} is empty")
    if not np.isfinite(array).all():
        raise StatisticsError(name, f"{name} holds NaN or infinite values")
    return array


def ks(reference: Any, current: Any) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test: the statistic D and its two-sided p-value."""
    result = scipy_stats.ks_2samp(_sample(reference, "reference"), _sample(current, "current"))
    return TestResult(float(result.statistic), float(result.pvalue))


def normalised_wasserstein(reference: Any, current: Any) -> float:
    """Wasserstein-1 distance between the samples, in reference standard deviations.

    A constant reference has no scale: the pooled standard deviation is used, and 0 is
    returned when both samples are the same constant.
    """
    ref, cur = _sample(reference, "reference"), _sample(current, "current")
    distance = scipy_stats.wasserstein_distance(ref, cur)
    scale = ref.std() or np.concatenate([ref, cur]).std()
    return float(distance / scale) if scale else 0.0


def _matrix(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, float)
    if array.ndim != 2 or len(array) < 2:
        raise StatisticsError(name, f"{name} must be a 2-D array of at least two rows")
    return array


def _subsample(rng: np.random.Generator, array: np.ndarray, size: int) -> np.ndarray:
    if len(array) <= size:
        return array
    return array[rng.choice(len(array), size, replace=False)]


@dataclass(frozen=True)
class MmdResult:
    mmd2: float
    """Unbiased estimate of the squared MMD (can be slightly negative without drift)."""
    threshold: float
    """The ``1 - alpha`` quantile of the permutation distribution."""
    p_value: float
    bandwidth: float
    n_reference: int
    n_current: int


def mmd_test(
    reference: Any,
    current: Any,
    *,
    alpha: float = 0.05,
    permutations: int = 200,
    max_samples: int = 500,
    seed: int = 0,
) -> MmdResult:
    """Gaussian-kernel MMD two-sample test with a permutation threshold.

    Windows larger than ``max_samples`` are subsampled (the kernel matrix grows with the
    square of the size); the test keeps its level on the subsample.
    """
    if not 0 < alpha < 1:
        raise StatisticsError("alpha", f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    x = _subsample(rng, _matrix(reference, "reference"), max_samples)
    y = _subsample(rng, _matrix(current, "current"), max_samples)
    pooled = np.vstack([x, y])
    squared = np.maximum(
        np.sum(pooled**2, axis=1)[:, None] + np.sum(pooled**2, axis=1)[None, :]
        - 2 * pooled @ pooled.T,
        0.0,
    )  # fmt: skip
    upper = squared[np.triu_indices(len(pooled), k=1)]
    bandwidth = float(np.sqrt(np.median(upper))) or 1.0
    kernel = np.exp(-squared / (2 * bandwidth**2))
    np.fill_diagonal(kernel, 0.0)  # the unbiased estimate leaves out the i == j terms
    m, n = len(x), len(y)

    def statistics(labels: np.ndarray) -> np.ndarray:
        """MMD^2 for each column of 0/1 labels (1 = reference)."""
        a = labels.astype(float)
        b = 1.0 - a
        ka, kb = kernel @ a, kernel @ b
        xx = np.sum(a * ka, axis=0) / (m * (m - 1))
        yy = np.sum(b * kb, axis=0) / (n * (n - 1))
        xy = np.sum(a * kb, axis=0) / (m * n)
        return xx + yy - 2 * xy

    observed_labels = np.zeros((m + n, 1))
    observed_labels[:m] = 1
    observed = float(statistics(observed_labels)[0])
    permuted = np.zeros((m + n, permutations))
    for column in range(permutations):
        permuted[rng.permutation(m + n)[:m], column] = 1
    null = statistics(permuted)
    return MmdResult(
        mmd2=observed,
        threshold=float(np.quantile(null, 1 - alpha)),
        p_value=float((1 + np.sum(null >= observed)) / (1 + permutations)),
        bandwidth=bandwidth,
        n_reference=m,
        n_current=n,
    )


@dataclass(frozen=True)
class DomainResult:
    auc: float
    """ROC-AUC on the held-out half."""
    reference_scores: np.ndarray
    """Held-out probability of "current" of each held-out reference sample."""
    current_scores: np.ndarray
    n_per_window: int
    """Samples per window used (train and test halves together)."""
    n_test_per_window: int


def domain_classifier(
    reference: Any, current: Any, *, max_samples: int = 2000, seed: int = 0
) -> DomainResult:
    """ROC-AUC on a held-out half of a logistic regression telling current from reference.

    Both samples are subsampled to the same size (at most ``max_samples``), so a classifier
    that cannot tell them apart scores 0.5; half of each trains, the other half is scored.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    x, y = _matrix(reference, "reference"), _matrix(current, "current")
    size = min(len(x), len(y), max_samples)
    if size < 4:
        raise StatisticsError("reference", "need at least 4 samples per window")
    x, y = rng.permutation(_subsample(rng, x, size)), rng.permutation(_subsample(rng, y, size))
    half = size // 2
    features = np.vstack([x[:half], y[:half]])
    labels = np.r_[np.zeros(half), np.ones(half)]
    model = LogisticRegression(max_iter=1000).fit(features, labels)
    held_ref = model.predict_proba(x[half:])[:, 1]
    held_cur = model.predict_proba(y[half:])[:, 1]
    held_labels = np.r_[np.zeros(len(held_ref)), np.ones(len(held_cur))]
    return DomainResult(
        auc=float(roc_auc_score(held_labels, np.r_[held_ref, held_cur])),
        reference_scores=held_ref,
        current_scores=held_cur,
        n_per_window=size,
        n_test_per_window=size - half,
    )


def auc_null_sd(n_per_class: int) -> float:
    """Standard deviation of the ROC-AUC of an uninformative score on n + n samples
    (the Mann-Whitney statistic's null: ``sqrt((2n + 1) / (12 n^2))``)."""
    return math.sqrt((2 * n_per_class + 1) / (12 * n_per_class * n_per_class))


def bernoulli_cusum(outcomes: Any, p0: float, p1: float) -> np.ndarray:
    """The CUSUM path ``S_1..S_n`` of 0/1 ``outcomes`` for a shift of the rate from p0 to p1."""
    if not (0 < p0 < 1 and 0 < p1 < 1) or p0 == p1:
        raise StatisticsError("p1", f"p0 and p1 must differ and lie in (0, 1), got {p0}, {p1}")
    x = np.asarray(outcomes, float).ravel()
    if ((x != 0) & (x != 1)).any():
        raise StatisticsError("outcomes", "outcomes must be 0 or 1")
    weights = x * np.log(p1 / p0) + (1 - x) * np.log((1 - p1) / (1 - p0))
    path = np.empty_like(weights)
    total = 0.0
    for index, weight in enumerate(weights):
        total = max(0.0, total + weight)
        path[index] = total
    return path


def bonferroni(alpha: float, tests: int) -> float:
    """The per-test level that keeps the chance of any false alarm among ``tests`` at alpha."""
    return alpha / max(1, tests)
