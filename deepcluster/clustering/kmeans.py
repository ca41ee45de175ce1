"""k-means on codes: scikit-learn (Lloyd, k-means++ seeding) or the same algorithm in torch.

The torch version runs where the codes are (a GPU, when there is one): at N = 70 000 it
avoids a device → host copy and scikit-learn's CPU time. `KMeans(backend="auto")` picks it
when CUDA is available and N is large.
"""

from __future__ import annotations

import time

import numpy as np
import torch
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


def _kmeans_pp(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next centre drawn with probability ∝ squared distance."""
    n = len(x)
    first = torch.randint(n, (1,), generator=gen, device=x.device)
    centers = [x[first]]
    d2 = ((x - centers[0]) ** 2).sum(1)  # (N,)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:  # fewer distinct points than k: any point will do
            pick = torch.randint(n, (1,), generator=gen, device=x.device)
        else:
            pick = torch.multinomial(d2 / total, 1, generator=gen)
        centers.append(x[pick])
        d2 = torch.minimum(d2, ((x - x[pick]) ** 2).sum(1))
    return torch.cat(centers)  # (k, d)


def kmeans_torch(
    z: np.ndarray | torch.Tensor,
    k: int,
    n_init: int = 10,
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int | None = 0,
    device: str | torch.device | None = None,
) -> ClusterResult:
    """k-means in torch on `device` (default: where z is). Same algorithm as scikit-learn's
    Lloyd: k-means++ seeding, n_init restarts keeping the lowest inertia, stop when the centres
    move less than tol × the data's mean variance."""
    x = torch.as_tensor(z).to(device=device, dtype=torch.float32)
    check_k(len(x), k)
    start = time.perf_counter()
    gen = torch.Generator(device=x.device).manual_seed(0 if seed is None else int(seed))
    threshold = tol * float(x.var(0).mean())
    best_inertia, best_centers = float("inf"), None
    for _ in range(n_init):
        centers = _kmeans_pp(x, k, gen)
        for _ in range(max_iter):
            labels = torch.cdist(x, centers).argmin(1)  # (N,)
            counts = torch.bincount(labels, minlength=k).unsqueeze(1)  # (k, 1)
            sums = torch.zeros_like(centers).index_add_(0, labels, x)
            new = torch.where(counts > 0, sums / counts.clamp(min=1), centers)
            shift = float(((new - centers) ** 2).sum())
            centers = new
            if shift <= threshold:
                break
        labels = torch.cdist(x, centers).argmin(1)
        inertia = float(((x - centers[labels]) ** 2).sum())
        if inertia < best_inertia:
            best_inertia, best_centers = inertia, centers
    labels = torch.cdist(x, best_centers).argmin(1)
    return ClusterResult(
        labels=labels.cpu().numpy().astype(np.int64),
        centers=best_centers.double().cpu().numpy(),
        seconds=time.perf_counter() - start,
        extra={"inertia": best_inertia, "backend": f"torch:{x.device.type}"},
    )


BACKENDS = ("auto", "sklearn", "torch")


class KMeans:
    """Configured k-means clusterer: `KMeans(n_init=10)(z, k)`.

    backend: `sklearn`, `torch` (on the GPU when there is one), or `auto` — torch on the GPU
    when CUDA is available and N >= gpu_min_samples, else scikit-learn.
    """

    name = "kmeans"

    def __init__(
        self,
        n_init: int = 10,
        max_iter: int = 300,
        seed: int | None = 0,
        backend: str = "auto",
        gpu_min_samples: int = 20_000,
    ) -> None:
        if n_init < 1:
            raise ValueError(f"clusterer.n_init={n_init} must be >= 1")
        if max_iter < 1:
            raise ValueError(f"clusterer.max_iter={max_iter} must be >= 1")
        if backend not in BACKENDS:
            raise ValueError(f"clusterer.backend={backend!r} must be one of {', '.join(BACKENDS)}")
        self.n_init = n_init
        self.max_iter = max_iter
        self.seed = seed
        self.backend = backend
        self.gpu_min_samples = gpu_min_samples

    def __call__(self, z: np.ndarray, k: int) -> ClusterResult:
        backend = self.backend
        if backend == "auto":
            big = len(z) >= self.gpu_min_samples
            backend = "torch" if big and torch.cuda.is_available() else "sklearn"
        if backend == "torch":
            device = "cuda" if torch.cuda.is_available() else "cpu"
            return kmeans_torch(z, k, self.n_init, self.max_iter, seed=self.seed, device=device)
        return kmeans(z, k, n_init=self.n_init, max_iter=self.max_iter, seed=self.seed)
