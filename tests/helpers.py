"""Test-only pieces that a config can name with _target_."""

import numpy as np

from deepcluster.clustering.base import ClusterResult


class FailOnRankZero:
    """A clusterer that fails the way Ward on NaN codes does (only rank 0 clusters)."""

    def __init__(self, **kwargs) -> None:  # takes (and ignores) the kmeans option's keys
        pass

    def __call__(self, z: np.ndarray, k: int) -> ClusterResult:
        raise ValueError("rank 0 refuses: codes contain NaN")
