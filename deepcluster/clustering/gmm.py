"""Gaussian mixture on codes (or on their manifold embedding), through scikit-learn."""

from __future__ import annotations

import time

import numpy as np
from sklearn.mixture import GaussianMixture

from deepcluster.clustering.base import ClusterResult, check_k, cluster_means

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


class GMM:
    """Configured Gaussian mixture: `GMM(covariance_type="full")(z, k)`.

    Labels are each point's most probable component; centers are the component means.
    With n_init > 1 scikit-learn keeps the fit with the best likelihood (no labels involved).
    """

    objective_name = "log_likelihood"  # total over the points; higher is better

    def __init__(
        self,
        covariance_type: str = "full",
        n_init: int = 1,
        max_iter: int = 100,
        reg_covar: float = 1e-6,
        seed: int | None = 0,
    ) -> None:
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"clusterer.covariance_type={covariance_type!r} must be one of "
                f"{', '.join(COVARIANCE_TYPES)}"
            )
        if n_init < 1:
            raise ValueError(f"clusterer.n_init={n_init} must be >= 1")
        if max_iter < 1:
            raise ValueError(f"clusterer.max_iter={max_iter} must be >= 1")
        if reg_covar < 0:
            raise ValueError(f"clusterer.reg_covar={reg_covar} must be >= 0")
        self.covariance_type, self.n_init, self.max_iter = covariance_type, n_init, max_iter
        self.reg_covar, self.seed = reg_covar, seed

    def __call__(self, z: np.ndarray, k: int) -> ClusterResult:
        """z: (N, d) float → labels (N,), centers (k, d) = cluster means."""
        z = np.ascontiguousarray(z, dtype=np.float64)
        check_k(len(z), k)
        start = time.perf_counter()
        model = GaussianMixture(
            n_components=k,
            covariance_type=self.covariance_type,
            n_init=self.n_init,
            max_iter=self.max_iter,
            reg_covar=self.reg_covar,
            random_state=self.seed,
        )
        labels = model.fit(z).predict(z).astype(np.int64)
        # the mean code of each cluster, as every clusterer gives (a wide component's mean is
        # not its members' mean); a component no point falls in keeps its own mean
        centers = cluster_means(z, labels, k)
        empty = np.bincount(labels, minlength=k) == 0
        centers[empty] = model.means_[empty]
        return ClusterResult(
            labels=labels,
            centers=centers,
            seconds=time.perf_counter() - start,
            objective=float(model.score(z) * len(z)),
            predictor=model,
            extra={
                "converged": bool(model.converged_),
                "bic": float(model.bic(z)),
                "component_means": model.means_.astype(np.float64),
            },
        )
