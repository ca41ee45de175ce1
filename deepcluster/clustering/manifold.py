"""A manifold step between the codes and the clusterer: UMAP, as in N2D (DESIGN.md §1.C)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings
from collections.abc import Iterator

import numpy as np
import torch

from deepcluster.errors import MissingDependencyError

log = logging.getLogger(__name__)

_CACHED_PACKAGES = ("umap", "pynndescent")
_numba_cache_on = False


def cache_umap_compilation() -> int:
    """Turn on numba's on-disk cache for umap-learn's compiled functions; returns how many.

    umap-learn does not declare its numba functions `cache=True`, so every new process compiles
    them again before its first embedding: about 14 s for the seeded layout (1 797 codes: 23 s
    against 9 s once cached), more for the parallel one. With the cache on, the
    first process writes the machine code beside umap's sources (or under NUMBA_CACHE_DIR) and
    later ones load it; numba keys it by the function's source file (time stamp and size),
    signature, CPU and numba's version, so upgrading umap-learn or numba recompiles. A change
    only in a compiled function it calls from another file is not seen: after upgrading
    pynndescent alone, delete the `*.nbi`/`*.nbc` files under umap's `__pycache__` (or
    NUMBA_CACHE_DIR). pynndescent's search (used above 4 096 codes) cannot be cached (numba says so
    at each save: `quiet_uncacheable` hides that) and compiles as before: on 70 000 codes the
    first call of a process took 58 s against 43 s for the second (uncached: 94 s against 39 s;
    2-core AVX2 EPYC, alone). Anything unexpected in numba's
    internals leaves UMAP as it was (uncached).
    """
    global _numba_cache_on
    if _numba_cache_on:
        return 0
    _numba_cache_on = True
    try:
        from numba.core.caching import NullCache
        from numba.core.dispatcher import Dispatcher
    except ImportError:  # pragma: no cover - numba moved its internals
        return 0
    enabled = 0
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in _CACHED_PACKAGES:
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, Dispatcher) and isinstance(getattr(obj, "_cache", None), NullCache):
                try:
                    obj.enable_caching()
                    enabled += 1
                except Exception as err:  # noqa: BLE001 - a cache is an optimisation only
                    log.debug("numba cache not enabled for %s: %s", obj, err)
    return enabled


@contextlib.contextmanager
def quiet_uncacheable() -> Iterator[None]:
    """Hide numba's "Cannot cache compiled function …" warnings, and only those: the cache was
    our request, not the user's, and the function simply compiles as it did before."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cannot cache compiled function")
        yield


def transform(model, z: np.ndarray) -> np.ndarray:
    """New codes (N, d) into a fitted umap.UMAP's embedding (deepcluster-predict), with its
    compiled code cached and quiet as in fitting (a loaded model has imported umap)."""
    cache_umap_compilation()
    with quiet_uncacheable():
        return model.transform(z)


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
        cache_umap_compilation()

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
            with quiet_uncacheable():
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
