"""Clustering metrics of DESIGN.md §2. Labels only ever evaluate, never choose."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix


def _contingency(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(C, k) table: rows true classes, columns clusters (only the values present)."""
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    if y_true.size == 0:
        raise ValueError("cannot score an empty labelling")
    return contingency_matrix(y_true, y_pred)


def cluster_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Best one-to-one cluster→class mapping (Hungarian) accuracy.

    With k ≠ C the table is rectangular: clusters left without a class count as errors.
    """
    table = _contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def purity(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Many-to-one: each cluster votes for its majority class."""
    table = _contingency(y_true, y_pred)
    return float(table.max(axis=0).sum() / table.sum())


def align_labels(reference: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Relabel `labels` so they match `reference` as well as possible (Hungarian).

    Both are (N,) ints in [0, k). Clusters of `labels` that find no partner keep fresh ids.
    """
    reference = np.asarray(reference).ravel()
    labels = np.asarray(labels).ravel()
    k = int(max(reference.max(), labels.max())) + 1
    table = np.zeros((k, k), dtype=np.int64)
    np.add.at(table, (labels, reference), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    mapping = np.arange(k)
    mapping[rows] = cols
    return mapping[labels]


def label_change_fraction(previous: np.ndarray, current: np.ndarray) -> float:
    """Fraction of points whose cluster changed, after aligning ids (DEKM's stop test)."""
    aligned = align_labels(previous, current)
    return float(np.mean(aligned != np.asarray(previous).ravel()))


def clustering_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """acc, nmi (arithmetic normalisation), ari and purity."""
    return {
        "acc": cluster_accuracy(y_true, y_pred),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred, average_method="arithmetic")),
        "ari": float(adjusted_rand_score(y_true, y_pred)),
        "purity": purity(y_true, y_pred),
    }
