"""k-means on codes, through scikit-learn (Lloyd, k-means++ seeding)."""

from __future__ import annotations

import time

import numpy as np
from sklearn.cluster import KMeans as _SKKMeans

from deepcluster.clustering.base import ClusterResult, check_k


def kmeans(
    z: np.ndarray, k: int, n_init: int = 10, max_iter: int = 300, seed: int | None = 0
) -> ClusterResult:
    """k-means. z: (N, d) float → labels (N,), centers (k, d)."""
    z = np.ascontiguousarray(z, dtype=np.float32)
    check_k(len(z), k)
    start = time.perf_counter()
    model = _SKKMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed)
    labels = model.fit_predict(z)
    return ClusterResult(
        labels=labels.astype(np.int64),
        centers=model.cluster_centers_.astype(np.float64),
        seconds=time.perf_counter() - start,
    )


class KMeans:
    """Configured k-means clusterer: `KMeans(n_init=10)(z, k)`."""

    name = "kmeans"

    def __init__(self, n_init: int = 10, max_iter: int = 300, seed: int | None = 0) -> None:
        if n_init < 1:
            raise ValueError(f"clusterer.n_init={n_init} must be >= 1")
        if max_iter < 1:
            raise ValueError(f"clusterer.max_iter={max_iter} must be >= 1")
        self.n_init = n_init
        self.max_iter = max_iter
        self.seed = seed

    def __call__(self, z: np.ndarray, k: int) -> ClusterResult:
        return kmeans(z, k, n_init=self.n_init, max_iter=self.max_iter, seed=self.seed)
