from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ClusterResult:
    """labels: (N,) int64 in [0, k); centers: (k, d) float — the mean code of each cluster."""

    labels: np.ndarray
    centers: np.ndarray
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # clusterer-specific (e.g. linkage)


def cluster_means(z: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean of each cluster. z: (N, d), labels: (N,) → (k, d); an empty cluster gets zeros."""
    z = np.asarray(z, dtype=np.float64)
    sums = np.zeros((k, z.shape[1]))
    np.add.at(sums, labels, z)
    counts = np.bincount(labels, minlength=k)[:, None]
    return sums / np.maximum(counts, 1)


def check_k(n_samples: int, k: int) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
        raise ValueError(f"k={k!r} must be an integer")
    if k < 2:
        raise ValueError(f"k={k} must be >= 2")
    if n_samples < k:
        raise ValueError(f"n_samples={n_samples} should be >= k={k}")
