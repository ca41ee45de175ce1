"""A manifold step between the codes and the clusterer: UMAP, as in N2D (DESIGN.md §1.C)."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from deepcluster.errors import MissingDependencyError

log = logging.getLogger(__name__)


class UMAPManifold:
    """Configured UMAP: `UMAPManifold(n_components=10)(z)` maps codes (N, d) → (N, m).

    `deterministic=True` passes `random_state=seed`: the same codes give the same embedding,
    but UMAP then runs single-threaded (numba parallelism needs an unseeded run).
    `deterministic=False` leaves UMAP unseeded and parallel: faster on many cores, and the
    embedding (hence the clusters) varies from run to run.
    """

    def __init__(
        self,
        n_components: int = 10,
        n_neighbors: int = 20,
        min_dist: float = 0.0,
        metric: str = "euclidean",
        n_epochs: int | None = None,
        seed: int | None = 0,
        deterministic: bool = True,
    ) -> None:
        if n_components < 1:
            raise ValueError(f"manifold.n_components={n_components} must be >= 1")
        if n_neighbors < 2:
            raise ValueError(f"manifold.n_neighbors={n_neighbors} must be >= 2")
        if min_dist < 0:
            raise ValueError(f"manifold.min_dist={min_dist} must be >= 0")
        if n_epochs is not None and n_epochs < 1:
            raise ValueError(f"manifold.n_epochs={n_epochs} must be >= 1 (or null: UMAP's default)")
        if deterministic and seed is None:
            raise ValueError("manifold.deterministic=true needs a seed (manifold.seed)")
        self.n_components, self.n_neighbors = n_components, n_neighbors
        self.min_dist, self.metric, self.n_epochs = min_dist, metric, n_epochs
        self.seed, self.deterministic = seed, deterministic
        self.seconds = 0.0  # wall time of the last call
        self.model = None  # the last fitted umap.UMAP: maps new codes with .transform

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """z: (N, d) float → (N, n_components) float32."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.ndim != 2:
            raise ValueError(f"codes must be (N, d), got shape {z.shape}")
        if not np.isfinite(z).all():
            raise ValueError("codes contain NaN or infinite values")
        n = len(z)
        if n <= self.n_components + 1:
            raise ValueError(f"n_samples={n} should be > manifold.n_components + 1")
        try:
            import umap  # slow to import (numba): only when the manifold is used
        except ImportError:
            raise MissingDependencyError("manifold=umap", "umap-learn>=0.5.5,<0.6") from None

        start = time.perf_counter()
        reducer = umap.UMAP(
            n_components=self.n_components,
            n_neighbors=min(self.n_neighbors, n - 1),
            min_dist=self.min_dist,
            metric=self.metric,
            n_epochs=self.n_epochs,
            random_state=self.seed if self.deterministic else None,
            # unseeded: let numba use every core; seeded UMAP forces one thread anyway
            n_jobs=1 if self.deterministic else -1,
        )
        threads = torch.get_num_threads()
        try:
            out = reducer.fit_transform(z).astype(np.float32)
        finally:  # numba's threading layer resets the OpenMP pool torch shares: a one-thread
            torch.set_num_threads(threads)  # run went on training with every core
        self.model = reducer
        self.seconds = time.perf_counter() - start
        log.info(
            "umap: %d × %d → %d-d in %.1f s (%s)",
            n,
            z.shape[1],
            self.n_components,
            self.seconds,
            "seeded, 1 thread" if self.deterministic else "unseeded, parallel",
        )
        return out
