"""What every clusterer returns, and the small helpers they share.

A clusterer is any callable `(z (N, d), k) → ClusterResult`; its class may say what its
objective is (`objective_name`: inertia, log-likelihood, …) and accept `n_init` restarts.
Adding one is a file here (or anywhere importable) and a YAML file in conf/clusterer/.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class Predictor(Protocol):
    def predict(self, z: np.ndarray) -> np.ndarray: ...


@dataclass
class ClusterResult:
    """labels: (N,) int64 in [0, k); centers: (k, d) float — the mean code of each cluster.

    objective: the clusterer's own label-free score (inertia, log-likelihood, …) or None.
    predictor: assigns new points (codes, or manifold coordinates) to these clusters.
    """

    labels: np.ndarray
    centers: np.ndarray
    seconds: float = 0.0
    objective: float | None = None
    predictor: Predictor | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # clusterer-specific (e.g. linkage)


class NearestCentroid:
    """Assigns points to the nearest of k centres (k-means' rule; Ward's out-of-sample one)."""

    def __init__(self, centers: np.ndarray) -> None:
        self.centers = np.asarray(centers, dtype=np.float64)  # (k, d)

    def predict(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        d2 = (z**2).sum(1)[:, None] - 2 * z @ self.centers.T + (self.centers**2).sum(1)
        return d2.argmin(1).astype(np.int64)


def cluster_means(z: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean of each cluster. z: (N, d), labels: (N,) → (k, d); an empty cluster gets zeros."""
    z = np.asarray(z, dtype=np.float64)
    sums = np.zeros((k, z.shape[1]))
    np.add.at(sums, labels, z)
    counts = np.bincount(labels, minlength=k)[:, None]
    return sums / np.maximum(counts, 1)


def code_centers(
    z: np.ndarray, space: np.ndarray, labels: np.ndarray, space_centers: np.ndarray
) -> np.ndarray:
    """Code-space centres of a clustering found in a manifold. z: (N, d) codes, space: (N, m)
    their manifold coordinates, labels: (N,), space_centers: (k, m) → (k, d).

    A cluster's centre is the mean code of its members. A cluster with no members (a GMM
    component that no point prefers) has no mean: it gets the code of the point nearest its
    centre in the manifold, so that DEC's soft assignment or a refinement target never sees a
    centre at the origin that no code is near.
    """
    k = len(space_centers)
    centers = cluster_means(z, labels, k)
    for j in np.flatnonzero(np.bincount(labels, minlength=k) == 0):
        nearest = int(((np.asarray(space) - space_centers[j]) ** 2).sum(1).argmin())
        centers[j] = z[nearest]
    return centers


def within_cluster_sum_of_squares(z: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Σ_n ||z_n − mean of its cluster||²: the k-means objective of any partition."""
    z = np.asarray(z, dtype=np.float64)
    return float(((z - cluster_means(z, labels, k)[labels]) ** 2).sum())


def with_restarts(clusterer: Any, n_init: int) -> Any:
    """A copy of the clusterer with `n_init` restarts, when it has restarts (else itself)."""
    if not hasattr(clusterer, "n_init") or n_init <= clusterer.n_init:
        return clusterer
    more = copy.copy(clusterer)
    more.n_init = n_init
    return more


def check_k(n_samples: int, k: int) -> None:
    """For direct Python use; the CLI has checked k before any data loaded."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
        raise ValueError(f"k={k!r} must be an integer")
    if k < 2:
        raise ValueError(f"k={k} must be >= 2")
    if n_samples < k:
        raise ValueError(f"n_samples={n_samples} should be >= k={k}")
