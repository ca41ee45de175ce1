"""Choosing k without labels (`k=auto`): one score per candidate k, the best one wins.

- `silhouette`: k-means for each k, mean silhouette on a fixed sample; the highest wins.
- `bic`: a full-covariance Gaussian mixture for each k; the lowest BIC wins.
- `ward_gap`: one Ward tree (on a sample of at most 10 000 codes); k is where the merge
  distances jump most — the dendrogram's longest vertical gap, the Ward paper's argument.
RESULTS.md compares them on digits and MNIST codes; `silhouette` is the default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepcluster.clustering.label_free import SILHOUETTE_SAMPLE, silhouette

CRITERIA = ("silhouette", "bic", "ward_gap")


@dataclass
class KChoice:
    k: int
    criterion: str
    scores: dict[int, float]  # candidate k → score
    higher_is_better: bool


def _sample(z: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return z[np.sort(rng.choice(len(z), size=min(n, len(z)), replace=False))]


def choose_k(
    z: np.ndarray, k_min: int = 2, k_max: int = 20, criterion: str = "silhouette", seed: int = 0
) -> KChoice:
    """z: (N, d) codes (or manifold coordinates) → the chosen k and every candidate's score."""
    if criterion not in CRITERIA:
        raise ValueError(f"k_search.criterion={criterion!r} must be one of {', '.join(CRITERIA)}")
    if not 2 <= k_min <= k_max:
        raise ValueError(f"k_search.min={k_min} and k_search.max={k_max}: need 2 <= min <= max")
    z = np.asarray(z, dtype=np.float64)
    k_max = min(k_max, len(z) - 1)
    if k_max < k_min:
        raise ValueError(
            f"k_search.min={k_min}, but {len(z)} images allow k up to {len(z) - 1}: "
            f"set k_search.min <= {len(z) - 1}"
        )
    ks = range(k_min, k_max + 1)
    if criterion == "silhouette":
        from deepcluster.clustering.kmeans import kmeans

        scores = {k: silhouette(z, kmeans(z, k, n_init=4, seed=seed).labels, seed=seed) for k in ks}
        best, higher = max(scores, key=lambda k: np.nan_to_num(scores[k], nan=-2)), True
    elif criterion == "bic":
        from sklearn.mixture import GaussianMixture

        scores = {k: float(GaussianMixture(k, random_state=seed).fit(z).bic(z)) for k in ks}
        best, higher = min(scores, key=scores.get), False
    else:
        from deepcluster.clustering.ward import ward_linkage

        heights = np.sort(ward_linkage(_sample(z, SILHOUETTE_SAMPLE, seed))[:, 2])[::-1]
        # cutting into k clusters undoes the k−1 highest merges: the gap below them
        scores = {k: float(heights[k - 2] - heights[k - 1]) for k in ks if k - 1 < len(heights)}
        best, higher = max(scores, key=scores.get), True
    return KChoice(k=int(best), criterion=criterion, scores=scores, higher_is_better=higher)
