import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.metrics import adjusted_rand_score

from deepcluster.clustering.base import cluster_means
from deepcluster.clustering.metrics import cluster_accuracy
from deepcluster.clustering.ward import Ward, cut, ward, ward_linkage


def overlapping_blobs(n=300, d=10, k=5, seed=0):
    """Blobs close enough that the tree, not just the gaps, decides the partition."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2.0, (k, d))
    y = rng.integers(0, k, n)
    return centers[y] + rng.normal(0, 1.0, (n, d)), y


@pytest.mark.parametrize("k", [2, 5, 9])
def test_partition_equals_scipy_ward(k):
    x, _ = overlapping_blobs()
    ours = ward(x, k).labels
    ref = fcluster(linkage(x, "ward"), t=k, criterion="maxclust")
    assert len(np.unique(ours)) == k
    assert adjusted_rand_score(ref, ours) == 1.0  # same partition, whatever the label names


def test_linkage_heights_equal_scipy():
    x, _ = overlapping_blobs(n=200, seed=1)
    np.testing.assert_allclose(
        np.sort(ward_linkage(x)[:, 2]), np.sort(linkage(x, "ward")[:, 2]), rtol=1e-9
    )


def test_labels_centers_and_tree_for_refinement():
    x, y = overlapping_blobs(n=400, k=4, seed=2)
    x[y == 1] += 20  # one far cluster
    res = Ward()(x, 4)
    assert res.labels.dtype == np.int64 and set(res.labels) == {0, 1, 2, 3}
    np.testing.assert_allclose(res.centers, cluster_means(x, res.labels, 4))
    assert res.extra["linkage"].shape == (399, 4)
    assert cluster_accuracy(y, res.labels) > 0.9
    # the tree cut into 4 is scipy's own cut of it (labels up to renaming)
    reference = fcluster(res.extra["linkage"], 4, criterion="maxclust")
    assert adjusted_rand_score(reference, cut(res.extra["linkage"], 4)) == 1.0


def test_bad_input():
    x, _ = overlapping_blobs(n=10)
    with pytest.raises(ValueError, match="n_samples=10 should be >= k=11"):
        ward(x, 11)
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ward(x, 3)


@pytest.mark.parametrize("k", [3, 5, 7, 10])
def test_tied_merge_heights_still_give_k_clusters(k):
    """Duplicated codes (a saturated Sigmoid layer gives them) tie merge heights: a height
    threshold (fcluster maxclust) then cut 16 distinct codes into 2, 4 or 8 clusters for k = 3,
    5, 7, 10, and each missing cluster got a centre at the origin, where new images went."""
    corners = np.array([[int(b) for b in f"{i:04b}"] for i in range(16)], dtype=float)
    z = np.repeat(corners, 50, axis=0)
    res = ward(z, k)
    assert np.bincount(res.labels, minlength=k).min() > 0 and res.labels.max() == k - 1
    np.testing.assert_allclose(res.centers, cluster_means(z, res.labels, k))
    # every cluster is whole copies of corners: duplicates are never split while others merge
    assert all(len(np.unique(res.labels[i * 50 : (i + 1) * 50])) == 1 for i in range(16))
