import numpy as np
import pytest

from deepcluster.clustering import (
    align_labels,
    cluster_accuracy,
    clustering_scores,
    label_change_fraction,
    purity,
)


def test_accuracy_perfect_under_permutation():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([2, 2, 0, 0, 1, 1])  # same partition, other names
    assert cluster_accuracy(y, pred) == 1.0
    scores = clustering_scores(y, pred)
    assert scores["nmi"] == pytest.approx(1.0)
    assert scores["ari"] == pytest.approx(1.0)
    assert scores["purity"] == 1.0


def test_accuracy_hand_computed():
    # classes  : 0 0 0 1 1 1
    # clusters : 1 1 0 0 0 0  → best map 1→0 (2 right), 0→1 (3 right): 5/6
    y = np.array([0, 0, 0, 1, 1, 1])
    pred = np.array([1, 1, 0, 0, 0, 0])
    assert cluster_accuracy(y, pred) == pytest.approx(5 / 6)
    # purity: cluster 1 → class 0 (2), cluster 0 → class 1 (3 of 4): 5/6
    assert purity(y, pred) == pytest.approx(5 / 6)


def test_more_clusters_than_classes_counts_unmatched_as_errors():
    # 2 classes, 4 clusters each pure: one-to-one matches only 2 clusters
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    pred = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    assert cluster_accuracy(y, pred) == pytest.approx(4 / 8)
    assert purity(y, pred) == 1.0  # many-to-one: every cluster is pure


def test_fewer_clusters_than_classes():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 0, 0, 1, 1])
    assert cluster_accuracy(y, pred) == pytest.approx(4 / 6)
    assert purity(y, pred) == pytest.approx(4 / 6)


def test_nmi_is_arithmetic_normalisation():
    from sklearn.metrics import mutual_info_score

    y = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 2, 2])

    def entropy(a):
        p = np.bincount(a) / len(a)
        p = p[p > 0]
        return -(p * np.log(p)).sum()

    expected = mutual_info_score(y, pred) / ((entropy(y) + entropy(pred)) / 2)
    assert clustering_scores(y, pred)["nmi"] == pytest.approx(expected)


def test_align_and_change_fraction():
    prev = np.array([0, 0, 1, 1, 2, 2])
    cur = np.array([1, 1, 2, 2, 0, 0])
    assert (align_labels(prev, cur) == prev).all()
    assert label_change_fraction(prev, cur) == 0.0
    cur2 = np.array([1, 1, 2, 0, 0, 0])  # one point moved
    assert label_change_fraction(prev, cur2) == pytest.approx(1 / 6)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="3 labels but y_pred has 2"):
        cluster_accuracy(np.array([0, 1, 1]), np.array([0, 1]))


def test_seed_agreement_is_label_permutation_free_and_falls_with_disagreement():
    from deepcluster.clustering.label_free import seed_agreement

    a = np.repeat([0, 1, 2], 20)
    renamed = np.array([2, 0, 1])[a]  # the same partition under other cluster numbers
    assert seed_agreement([a, renamed, a]) == pytest.approx(1.0)
    noisy = a.copy()
    noisy[::4] = (noisy[::4] + 1) % 3  # a quarter of the points moved
    assert 0.0 < seed_agreement([a, noisy]) < 0.9
    assert np.isnan(seed_agreement([a]))
    with pytest.raises(ValueError, match="different sizes"):
        seed_agreement([a, a[:-1]])


def test_label_free_scores_are_nan_where_undefined_not_an_error():
    """k = N passes check_k (each point its own cluster is a partition), but scikit-learn's
    silhouette and Calinski–Harabasz raise on it; one cluster has no score either."""
    import math

    from deepcluster.clustering.kmeans import kmeans
    from deepcluster.clustering.label_free import label_free_scores

    z = np.random.default_rng(0).normal(size=(6, 3))
    res = kmeans(z, 6)
    scores = label_free_scores(z, res.labels, res.objective)
    assert math.isnan(scores["silhouette"]) and math.isnan(scores["calinski_harabasz"])
    assert math.isnan(label_free_scores(z, np.zeros(6, dtype=int))["davies_bouldin"])
    scores = label_free_scores(z, np.array([0, 0, 0, 1, 1, 2]))
    assert -1 <= scores["silhouette"] <= 1 and scores["calinski_harabasz"] > 0
    # every cluster one repeated code (saturated codes): the best partition; scikit-learn's
    # Calinski-Harabasz says 1.0 there, below almost any other. Ours: inf (null in JSON)
    codes = np.repeat(np.eye(3), 4, axis=0)
    scores = label_free_scores(codes, np.repeat(np.arange(3), 4))
    assert scores["calinski_harabasz"] == math.inf and scores["davies_bouldin"] == 0.0
    from deepcluster.outputs import jsonable

    assert jsonable(scores)["calinski_harabasz"] is None
    # every code the same (a collapsed encoder, which Ward still cuts in k): no score, not inf
    scores = label_free_scores(np.zeros((12, 3)), np.repeat(np.arange(3), 4))
    assert math.isnan(scores["calinski_harabasz"])
