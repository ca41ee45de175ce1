import numpy as np
import pytest

from deepcluster.clustering import cluster_accuracy
from deepcluster.clustering.base import cluster_means
from deepcluster.clustering.kmeans import KMeans, kmeans


def blobs(n_per=50, k=4, d=5, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=5.0, size=(k, d))
    y = np.repeat(np.arange(k), n_per)
    return centers[y] + spread * rng.normal(size=(len(y), d)), y


def test_kmeans_four_point_toy():
    z = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 10.0], [10.0, 11.0]])
    res = kmeans(z, 2, seed=0)
    assert res.labels[0] == res.labels[1] != res.labels[2] == res.labels[3]
    np.testing.assert_allclose(np.sort(res.centers[:, 1]), [0.5, 10.5])


def test_kmeans_recovers_blobs():
    z, y = blobs()
    res = KMeans(n_init=5, seed=0)(z, 4)
    assert cluster_accuracy(y, res.labels) == 1.0
    assert res.centers.shape == (4, 5)
    assert res.labels.dtype == np.int64


def test_kmeans_is_reproducible():
    z, _ = blobs(spread=3.0)
    a, b = kmeans(z, 4, seed=3), kmeans(z, 4, seed=3)
    assert (a.labels == b.labels).all()


@pytest.mark.parametrize(
    "k, match", [(1, "k=1 must be >= 2"), (300, "n_samples=200 should be >= k=300")]
)
def test_kmeans_rejects_bad_k(k, match):
    z, _ = blobs()
    with pytest.raises(ValueError, match=match):
        kmeans(z, k)


def test_cluster_means():
    z = np.array([[0.0, 2.0], [2.0, 4.0], [10.0, 10.0]])
    np.testing.assert_allclose(cluster_means(z, np.array([0, 0, 1]), 3), [[1, 3], [10, 10], [0, 0]])


def test_torch_kmeans_matches_sklearn_on_blobs():
    from sklearn.datasets import make_blobs

    from deepcluster.clustering.kmeans import kmeans_torch

    x, y = make_blobs(600, n_features=10, centers=6, cluster_std=1.5, random_state=3)
    ours = kmeans_torch(x, 6, seed=0)
    ref = kmeans(x, 6, seed=0)
    assert cluster_accuracy(ref.labels, ours.labels) == 1.0
    assert cluster_accuracy(y, ours.labels) == 1.0
    np.testing.assert_allclose(ours.centers, cluster_means(x, ours.labels, 6), atol=1e-4)
    again = KMeans(backend="torch", seed=0)(x, 6)
    assert (again.labels == ours.labels).all()  # seeded: the same on a second call
    with pytest.raises(ValueError, match="clusterer.backend='gpu' must be one of"):
        KMeans(backend="gpu")
