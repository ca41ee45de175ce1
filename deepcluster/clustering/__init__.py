"""Clustering algorithms and metrics: plain numpy/torch, no Lightning, Hydra or W&B."""

from deepcluster.clustering.base import ClusterResult
from deepcluster.clustering.metrics import (
    align_labels,
    cluster_accuracy,
    clustering_scores,
    label_change_fraction,
    purity,
)

__all__ = [
    "ClusterResult",
    "align_labels",
    "cluster_accuracy",
    "clustering_scores",
    "label_change_fraction",
    "purity",
]
