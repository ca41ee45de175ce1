"""Exact Ward agglomerative clustering on Euclidean codes, in O(N·d) memory.

`fastcluster.linkage_vector(..., method="ward")` works from the points themselves (nearest-
neighbour chain), never an N×N or condensed distance matrix: 70 000 × 10 codes take about a
minute and under 100 MB on 2 cores, where a distance matrix would need ≈ 19.6 GB.
"""

from __future__ import annotations

import logging
import time

import fastcluster
import numpy as np

from deepcluster.clustering.base import (
    ClusterResult,
    NearestCentroid,
    check_k,
    cluster_means,
    within_cluster_sum_of_squares,
)

log = logging.getLogger(__name__)


def ward_linkage(z: np.ndarray) -> np.ndarray:
    """SciPy-format linkage matrix (N-1, 4) of exact Ward on z: (N, d) float."""
    z = np.ascontiguousarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"codes must be (N, d), got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError("codes contain NaN or infinite values; Ward needs finite points")
    return fastcluster.linkage_vector(z, method="ward", metric="euclidean")


def cut(linkage: np.ndarray, k: int) -> np.ndarray:
    """Labels (N,) int64 in [0, k): the tree as it stood after its first N - k merges, so
    exactly k clusters. (A height threshold, scipy's fcluster(maxclust), gives fewer where
    merge heights tie — duplicated or saturated codes — and the missing clusters would get
    centres at the origin.) Ties are broken by the linkage's merge order."""
    n = len(linkage) + 1
    kept = linkage[: n - k, :2].astype(np.int64)  # merge i made node n + i of these two
    merged = np.zeros(2 * n - k, dtype=bool)
    merged[kept.ravel()] = True
    labels = np.full(2 * n - k, -1, dtype=np.int64)
    labels[~merged] = np.arange(k)  # the k nodes no kept merge joined further
    for i in range(n - k - 1, -1, -1):  # a node's label passes down to the two it joined
        labels[kept[i]] = labels[n + i]
    return labels[:n]


def ward(z: np.ndarray, k: int) -> ClusterResult:
    """Ward clustering. z: (N, d) → labels (N,), centers (k, d) = cluster means.

    extra["linkage"] holds the full tree, for the dendrogram.
    """
    check_k(len(z), k)
    start = time.perf_counter()
    if len(z) > 20_000:
        log.info(
            "ward: linkage of %d × %d codes (about a minute per 70 000 on 2 cores)…", *np.shape(z)
        )
    linkage = ward_linkage(z)
    labels = cut(linkage, k)
    seconds = time.perf_counter() - start
    log.info("ward: %d points → %d clusters in %.1f s", len(z), k, seconds)
    centers = cluster_means(z, labels, k)
    return ClusterResult(
        labels=labels,
        centers=centers,
        seconds=seconds,
        objective=within_cluster_sum_of_squares(z, labels, k),  # what Ward's merges minimise
        predictor=NearestCentroid(centers),  # new points join the nearest cluster mean
        extra={"linkage": linkage},
    )


class Ward:
    """Configured Ward clusterer: `Ward()(z, k)`. Deterministic: no seed, no restarts."""

    objective_name = "within_ss"  # lower is better

    def __call__(self, z: np.ndarray, k: int) -> ClusterResult:
        return ward(z, k)
