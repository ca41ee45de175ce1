"""k-means on codes: scikit-learn's (the default) or a torch version for codes on a GPU.

`backend: sklearn` is scikit-learn's Lloyd with greedy k-means++ seeding. `backend: torch`
runs the same steps in torch where the codes are (float32; greedy k-means++ with
2 + ⌊ln k⌋ candidates per centre, empty clusters moved to the points farthest from their
centres, stop when the centres move less than tol × the data's mean variance). The two use
different random streams, so the same seed gives the same *quality* (inertia within 0.1 % on
our tests), not the same labels: the backend is chosen in the config, never by the machine.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from sklearn.cluster import KMeans as _SKKMeans

from deepcluster.clustering.base import ClusterResult, NearestCentroid, check_k


def kmeans(
    z: np.ndarray, k: int, n_init: int = 10, max_iter: int = 300, seed: int | None = 0
) -> ClusterResult:
    """scikit-learn k-means. z: (N, d) float → labels (N,), centers (k, d)."""
    z = np.ascontiguousarray(z, dtype=np.float32)
    check_k(len(z), k)
    start = time.perf_counter()
    model = _SKKMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed)
    labels = model.fit_predict(z)
    centers = model.cluster_centers_.astype(np.float64)
    return ClusterResult(
        labels=labels.astype(np.int64),
        centers=centers,
        seconds=time.perf_counter() - start,
        objective=float(model.inertia_),
        predictor=NearestCentroid(centers),
        extra={"n_iter": int(model.n_iter_), "backend": "sklearn"},
    )


def _sq_dist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (N, m), clamped at 0 (the expansion can go slightly < 0)."""
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ c.T + c.pow(2).sum(1)).clamp_(min=0)


def _kmeans_pp(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Greedy k-means++: of 2 + ⌊ln k⌋ candidates drawn ∝ D², keep the one that lowers the
    potential most (what scikit-learn does)."""
    n, trials = len(x), 2 + int(math.log(k))
    first = torch.randint(n, (1,), generator=gen, device=x.device)
    centers = [x[first]]
    d2 = _sq_dist(x, centers[0]).squeeze(1)  # (N,)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:  # fewer distinct points than k: any point will do
            pick = torch.randint(n, (1,), generator=gen, device=x.device)
        else:
            cand = torch.multinomial(d2 / total, trials, replacement=True, generator=gen)
            cand_d2 = torch.minimum(d2.unsqueeze(1), _sq_dist(x, x[cand]))  # (N, trials)
            pick = cand[cand_d2.sum(0).argmin()].reshape(1)
        centers.append(x[pick])
        d2 = torch.minimum(d2, _sq_dist(x, x[pick]).squeeze(1))
    return torch.cat(centers)  # (k, d)


def _lloyd(x: torch.Tensor, centers: torch.Tensor, max_iter: int, threshold: float):
    k = len(centers)
    for _ in range(max_iter):
        d2 = _sq_dist(x, centers)
        labels = d2.argmin(1)  # (N,)
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centers).index_add_(0, labels, x)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):  # relocate empty clusters to the points farthest from their centres,
            # which leave the clusters they were in (scikit-learn's relocation)
            far = d2.gather(1, labels[:, None]).squeeze(1).topk(len(empty)).indices
            sums.index_add_(0, labels[far], -x[far])
            counts = counts.index_add(0, labels[far], -torch.ones_like(far))
            sums[empty], counts[empty] = x[far], 1
        new = sums / counts.clamp(min=1).unsqueeze(1)
        shift = float((new - centers).pow(2).sum())
        centers = new
        if shift <= threshold:
            break
    d2 = _sq_dist(x, centers)
    labels = d2.argmin(1)
    return labels, centers, float(d2.gather(1, labels[:, None]).sum())


def kmeans_torch(
    z: np.ndarray | torch.Tensor,
    k: int,
    n_init: int = 10,
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int | None = 0,
    device: str | torch.device | None = None,
) -> ClusterResult:
    """k-means in torch on `device` (default: where z is); n_init restarts, lowest inertia."""
    x = torch.as_tensor(z).to(device=device, dtype=torch.float32)
    check_k(len(x), k)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("k-means: the codes hold NaN or inf values")
    start = time.perf_counter()
    # Centred, as scikit-learn does: the float32 expansion of the distances loses the
    # cluster spread when every code shares a large offset.
    mean = x.mean(0)
    x = x - mean
    gen = torch.Generator(device=x.device)
    if seed is None:
        gen.seed()  # a fresh start each call, as scikit-learn's random_state=None
    else:
        gen.manual_seed(int(seed))
    threshold = tol * float(x.var(0).mean())
    best = None
    for _ in range(n_init):
        labels, centers, inertia = _lloyd(x, _kmeans_pp(x, k, gen), max_iter, threshold)
        if best is None or inertia < best[2]:
            best = (labels, centers, inertia)
    labels, centers, inertia = best
    centers_np = (centers + mean).double().cpu().numpy()
    return ClusterResult(
        labels=labels.cpu().numpy().astype(np.int64),
        centers=centers_np,
        seconds=time.perf_counter() - start,
        objective=inertia,
        predictor=NearestCentroid(centers_np),
        extra={"backend": f"torch:{x.device.type}"},
    )


BACKENDS = ("sklearn", "torch")
DEVICES = ("auto", "cpu", "cuda")


class KMeans:
    """Configured k-means clusterer: `KMeans(n_init=10)(z, k)`.

    backend: `sklearn` (default) or `torch`; device (torch only): `auto` (the GPU when there
    is one, else the CPU), `cpu` or `cuda`. CUDA draws other random numbers than the CPU, so
    `auto` gives other labels on a machine with a GPU; `cpu` gives the same on any machine.
    """

    objective_name = "inertia"  # lower is better

    def __init__(
        self,
        n_init: int = 10,
        max_iter: int = 300,
        seed: int | None = 0,
        backend: str = "sklearn",
        device: str = "auto",
    ) -> None:
        if n_init < 1:
            raise ValueError(f"clusterer.n_init={n_init} must be >= 1")
        if max_iter < 1:
            raise ValueError(f"clusterer.max_iter={max_iter} must be >= 1")
        if backend not in BACKENDS:
            raise ValueError(f"clusterer.backend={backend!r} must be one of {', '.join(BACKENDS)}")
        if device not in DEVICES:
            raise ValueError(f"clusterer.device={device!r} must be one of {', '.join(DEVICES)}")
        self.n_init, self.max_iter, self.seed, self.backend = n_init, max_iter, seed, backend
        self.device = device

    def __call__(self, z: np.ndarray | torch.Tensor, k: int) -> ClusterResult:
        if self.backend == "torch":
            device = self.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            return kmeans_torch(z, k, self.n_init, self.max_iter, seed=self.seed, device=device)
        z = z.cpu().numpy() if isinstance(z, torch.Tensor) else z
        return kmeans(z, k, n_init=self.n_init, max_iter=self.max_iter, seed=self.seed)
