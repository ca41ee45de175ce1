import numpy as np
import pytest
import torch

from deepcluster.clustering import cluster_accuracy
from deepcluster.clustering.kmeans import kmeans
from deepcluster.clustering.rotation import (
    rotate_and_target,
    rotation,
    rotation_targets,
    within_cluster_scatter,
)


def _clusters(seed=0, n_per=60, k=3, d=4):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    labels = np.repeat(np.arange(k), n_per)
    z = centers[labels] + rng.normal(size=(len(labels), d)) * np.array([0.5, 1.0, 2.0, 0.3])
    return z, labels


def test_scatter_hand_computed():
    z = np.array([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]])
    labels = np.array([0, 0, 1])
    centers = np.array([[1.0, 0.0], [5.0, 5.0]])
    # deviations (-1, 0), (1, 0), (0, 0) → Sw = [[2, 0], [0, 0]]
    np.testing.assert_allclose(within_cluster_scatter(z, labels, centers), [[2, 0], [0, 0]])


def test_v_is_orthogonal_and_last_column_has_largest_within_variance():
    z, labels = _clusters()
    res = kmeans(z, 3, seed=0)
    sw = within_cluster_scatter(z, res.labels, res.centers)
    v = rotation(sw)
    np.testing.assert_allclose(v.T @ v, np.eye(4), atol=1e-10)
    variances = np.diag(v.T @ sw @ v)  # within-cluster variance along each column
    assert np.all(np.diff(variances) >= -1e-9)  # ascending
    assert variances[-1] == pytest.approx(np.linalg.eigvalsh(sw).max())


def test_kmeans_objective_unchanged_by_rotation():
    z, _ = _clusters(seed=1)
    res = kmeans(z, 3, seed=0)
    v, _ = rotate_and_target(z, res.labels, res.centers)
    before = ((z - res.centers[res.labels]) ** 2).sum()
    y, u_rot = z @ v, res.centers @ v
    after = ((y - u_rot[res.labels]) ** 2).sum()
    assert after == pytest.approx(before, rel=1e-10)


def test_targets_differ_from_y_only_in_last_coordinate():
    z, _ = _clusters(seed=2)
    res = kmeans(z, 3, seed=0)
    v, t = rotate_and_target(z, res.labels, res.centers)
    y = z @ v
    np.testing.assert_allclose(t[:, :-1], y[:, :-1])
    np.testing.assert_allclose(t[:, -1], (res.centers @ v)[res.labels, -1])
    assert not np.allclose(t[:, -1], y[:, -1])
    # under another rotation (none), the last coordinate is pulled to the centre's own
    plain = rotation_targets(z, res.labels, res.centers, np.eye(z.shape[1]))
    np.testing.assert_allclose(plain[:, :-1], z[:, :-1])
    np.testing.assert_allclose(plain[:, -1], res.centers[res.labels, -1])


def test_refinement_shrinks_worst_direction_and_raises_acc():
    # Two clusters separated along axis 0 but smeared far along axis 1, where k-means
    # splits them wrongly; refinement pulls points to their centroid along the worst axis.
    rng = np.random.default_rng(0)
    y_true = np.repeat([0, 1], 200)
    x = np.stack([3.0 * y_true + 0.3 * rng.normal(size=400), 6.0 * rng.normal(size=400)], 1)
    x_t = torch.tensor(x, dtype=torch.float32)
    f = torch.nn.Linear(2, 2)
    with torch.no_grad():
        f.weight.copy_(torch.eye(2))
        f.bias.zero_()
    opt = torch.optim.Adam(f.parameters(), lr=0.05)

    def state():
        with torch.no_grad():
            z = f(x_t).numpy().astype(np.float64)
        res = kmeans(z, 2, seed=0)
        v, t = rotate_and_target(z, res.labels, res.centers)
        worst = float(np.diag(v.T @ within_cluster_scatter(z, res.labels, res.centers) @ v)[-1])
        return res, v, t, worst / within_cluster_scatter(z, res.labels, res.centers).trace()

    res0, _, _, worst0 = state()
    acc0 = cluster_accuracy(y_true, res0.labels)
    for _ in range(15):  # updates
        res, v, t, _ = state()
        v_t, t_t = torch.tensor(v, dtype=torch.float32), torch.tensor(t, dtype=torch.float32)
        for _ in range(20):  # steps between updates
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(f(x_t) @ v_t, t_t)
            loss.backward()
            opt.step()
    res1, _, _, worst1 = state()
    acc1 = cluster_accuracy(y_true, res1.labels)
    assert acc0 < 0.75
    assert acc1 > 0.95 > acc0
    assert worst1 < worst0
