"""Label-free scores of a clustering: what may choose a model, a k or a setting.

Silhouette on a fixed random sample (at most 10 000 codes: it is O(n²)), Calinski–Harabasz
and Davies–Bouldin on all codes (scikit-learn), and the clusterer's own objective: these
measure one partition in one space. Seed agreement (the mean adjusted Rand index between the
partitions of runs that differ only in their seed) measures a recipe, in no space at all, so
it compares recipes whose code spaces differ (clustering stability: Ben-Hur et al. 2002, Lange
et al. 2004).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_score,
)

SILHOUETTE_SAMPLE = 10_000


def silhouette(z: np.ndarray, labels: np.ndarray, sample: int = SILHOUETTE_SAMPLE, seed: int = 0):
    """Mean silhouette (Euclidean) of a fixed random sample of at most `sample` points."""
    if not scorable(labels):
        return math.nan
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(z), size=min(sample, len(z)), replace=False)
    if not scorable(labels[idx]):
        return math.nan
    return float(silhouette_score(z[idx], labels[idx]))


def scorable(labels: np.ndarray) -> bool:
    """The scores compare clusters with each other and points with their cluster: they need
    2 to N - 1 clusters (k = N, each point alone, is a valid partition with no score)."""
    return 2 <= len(np.unique(labels)) < len(labels)


def label_free_scores(
    z: np.ndarray, labels: np.ndarray, objective: float | None = None, seed: int = 0
) -> dict[str, float]:
    """silhouette, calinski_harabasz (higher is better), davies_bouldin (lower), objective."""
    z = np.asarray(z, dtype=np.float64)
    several = scorable(labels)
    return {
        "silhouette": silhouette(z, labels, seed=seed),
        "calinski_harabasz": _calinski_harabasz(z, labels) if several else math.nan,
        "davies_bouldin": float(davies_bouldin_score(z, labels)) if several else math.nan,
        "objective": math.nan if objective is None else float(objective),
    }


def _calinski_harabasz(z: np.ndarray, labels: np.ndarray) -> float:
    """scikit-learn's score, but inf where every cluster is one repeated code and the
    clusters differ (no spread within: the best partition there is; scikit-learn says 1.0,
    below almost any other), and NaN where every code is the same (0 / 0: no score)."""
    score = float(calinski_harabasz_score(z, labels))
    if score != 1.0:
        return score
    groups = [z[labels == c] for c in np.unique(labels)]
    if any(np.any(g - g.mean(axis=0)) for g in groups):
        return score  # a real 1.0
    return math.inf if np.any(z - z.mean(axis=0)) else math.nan


def seed_agreement(partitions: Sequence[np.ndarray]) -> float:
    """Mean adjusted Rand index over every pair of partitions of the same points, in the same
    order (e.g. one run per seed); nan for fewer than two. 1: every seed finds the same clusters."""
    sizes = {len(p) for p in partitions}
    if len(sizes) > 1:
        raise ValueError(f"partitions of different sizes {sorted(sizes)}: not the same points")
    pairs = [adjusted_rand_score(a, b) for a, b in itertools.combinations(partitions, 2)]
    return float(np.mean(pairs)) if pairs else math.nan
