"""The manifold step (UMAP) and the GMM clusterer, alone, through Hydra and through a run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from deepcluster.build import instantiate
from deepcluster.callbacks import ClusteringCallback
from deepcluster.clustering import cluster_accuracy
from deepcluster.clustering.base import cluster_means
from deepcluster.clustering.gmm import GMM
from deepcluster.clustering.kmeans import KMeans
from deepcluster.clustering.manifold import UMAPManifold
from deepcluster.config import validate as validate_config
from deepcluster.errors import ConfigError
from deepcluster.run import run
from tests.conftest import CONF_DIR
from tests.test_clusterers import blobs

# few optimisation epochs: the test pays numba's compile time once, not a long fit
FAST_UMAP = {"n_components": 2, "n_neighbors": 10, "n_epochs": 50, "seed": 0}


@pytest.fixture(scope="module")
def umap_pair():
    """Two seeded UMAP runs on 4 separated blobs in 8-d: ((z, y), embedding a, embedding b)."""
    z, y = blobs(n_per=40, k=4, d=8, spread=0.5, seed=1)
    return (z, y), UMAPManifold(**FAST_UMAP)(z), UMAPManifold(**FAST_UMAP)(z)


def test_umap_keeps_separated_clusters_separable(umap_pair):
    (z, y), emb, _ = umap_pair
    assert emb.shape == (len(z), 2) and emb.dtype == np.float32
    assert cluster_accuracy(y, KMeans(seed=0)(emb, 4).labels) == 1.0


def test_seeded_umap_is_reproducible(umap_pair):
    _, a, b = umap_pair
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_components": 0}, "n_components=0"),
        ({"n_neighbors": 1}, "n_neighbors=1"),
        ({"min_dist": -0.1}, "min_dist=-0.1"),
        ({"seed": None}, "needs a seed"),
    ],
)
def test_umap_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UMAPManifold(**kwargs)


def test_umap_leaves_torch_thread_count_alone():
    """numba's threading layer resets the OpenMP pool torch shares: a one-thread run (resumed or
    not) must train on one thread after UMAP, or its floats and the resumed run's differ."""
    code = (
        "import numpy as np, torch; from deepcluster.clustering.manifold import UMAPManifold; "
        "torch.set_num_threads(1); "
        "UMAPManifold(n_components=2, n_neighbors=5, n_epochs=5)(np.random.rand(60, 4)); "
        "print(torch.get_num_threads())"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "1"


def test_umap_rejects_bad_codes():
    with pytest.raises(ValueError, match="NaN"):
        UMAPManifold()(np.full((50, 3), np.nan))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        UMAPManifold()(np.zeros(50))


def test_gmm_recovers_blobs():
    z, y = blobs()
    res = GMM(seed=0)(z, 4)
    assert cluster_accuracy(y, res.labels) == 1.0
    assert res.labels.dtype == np.int64 and res.centers.shape == (4, 5)
    # well-separated blobs: the component means are the cluster means
    np.testing.assert_allclose(res.centers, cluster_means(z, res.labels, 4), atol=1e-6)
    assert res.extra["converged"]


def test_gmm_centres_are_the_clusters_means_as_every_clusterers_are():
    """A wide and a narrow component: the wide one's mean lies off its members' mean.
    Method A's scatter and targets, and DEC's start, are built on member means."""
    rng = np.random.default_rng(0)
    z = np.vstack([rng.normal([0, 0], [3, 1], (500, 2)), rng.normal([4, 0], 0.3, (500, 2))])
    res = GMM(seed=0)(z, 2)
    np.testing.assert_allclose(res.centers, cluster_means(z, res.labels, 2))
    assert np.abs(res.extra["component_means"] - res.centers).max() > 0.1


def test_gmm_is_reproducible():
    z, _ = blobs(spread=3.0)
    a, b = GMM(n_init=2, seed=3)(z, 4), GMM(n_init=2, seed=3)(z, 4)
    assert (a.labels == b.labels).all()


@pytest.mark.parametrize(
    "k, match", [(1, "k=1 must be >= 2"), (300, "n_samples=200 should be >= k=300")]
)
def test_gmm_rejects_bad_k(k, match):
    z, _ = blobs()
    with pytest.raises(ValueError, match=match):
        GMM()(z, k)


def test_gmm_rejects_bad_covariance_type():
    with pytest.raises(ValueError, match="covariance_type='round'"):
        GMM(covariance_type="round")


@pytest.mark.parametrize(
    "clusterer", sorted(p.stem for p in (Path(CONF_DIR) / "clusterer").glob("*.yaml"))
)
def test_umap_composes_with_every_clusterer(compose, clusterer, tmp_path):
    cfg = compose("manifold=umap", f"clusterer={clusterer}", "refine=dekm", f"data.root={tmp_path}")
    OmegaConf.resolve(cfg)
    validate_config(cfg)
    manifold = instantiate(cfg.manifold, "manifold")
    assert isinstance(manifold, UMAPManifold) and manifold.n_components == cfg.k
    assert callable(instantiate(cfg.clusterer, "clusterer"))


def test_umap_with_k_auto_gets_as_many_dimensions_as_the_largest_candidate(compose):
    cfg = compose("manifold=umap", "k=auto", "k_search.max=12")
    validate_config(cfg)
    assert instantiate(cfg.manifold, "manifold").n_components == 12  # was "auto": a crash
    assert instantiate(compose("manifold=umap", "k=7").manifold, "manifold").n_components == 7


def test_manifold_none_is_no_transform(compose):
    assert instantiate(compose("manifold=none").manifold, "manifold") is None


def test_bad_every_n_epochs_names_the_key(compose):
    with pytest.raises(ConfigError, match="manifold.every_n_epochs=-1"):
        validate_config(compose("manifold=umap", "manifold.every_n_epochs=-1"))


def test_manifold_centres_live_in_the_code_space():
    """With a manifold, the result's centres are the code means (what refinement needs)."""
    from deepcluster.clustering.schedule import ClusteringSchedule, Update

    z, y = blobs(n_per=30, k=3, d=6, seed=2)
    callback = ClusteringCallback(
        GMM(seed=0), k=3, schedule=ClusteringSchedule(), manifold=lambda codes: codes[:, :2] * 10.0
    )
    out = callback._cluster_rank0(z, Update("epoch", True, True, "pretrain"), refining=False)
    res = out["result"]
    assert res.centers.shape == (3, 6)
    np.testing.assert_allclose(res.centers, cluster_means(z, res.labels, 3))
    assert res.extra["manifold_centers"].shape == (3, 2)
    assert callback.last_embedding.shape == (90, 2)
    v, targets = out["targets"]["rotation"], out["targets"]["targets"]  # d × d: the manifold
    # did not leak into the rotation
    assert v.shape == (6, 6) and targets.shape == (90, 6)


@pytest.mark.parametrize("refine", ["dekm", "dec"])
def test_run_applies_the_manifold_on_schedule_with_refinement(compose, tmp_path, refine):
    """Synthetic run: 1 pretrain + 2 refinement epochs, UMAP every 5 epochs, 2-d manifold.

    Epoch 0 starts refinement (manifold); every refinement update after it clusters the raw
    codes (DEC: assigns them to its learned centres), the last epoch included, so `changed`
    compares like with like. A 2-d manifold under 10-d codes would break the rotation (DEC:
    its centres) if the manifold's centres leaked into the targets.
    """
    cfg = compose(
        "dataset=synthetic",
        "manifold=umap",
        "clusterer=gmm",
        f"refine={refine}",
        "logger=none",
        "plots=false",
        "dataset.n=160",
        "pretrain_epochs=1",
        "trainer.max_epochs=3",
        "refine.update_interval=0",
        "refine.tol=0",
        "manifold.every_n_epochs=5",
        "manifold.n_components=2",
        "manifold.n_epochs=50",
        "trainer.enable_progress_bar=false",
        f"+output_dir={tmp_path}",
    )
    metrics = run(cfg)
    assert metrics["manifold"] == "umap" and metrics["clusterer"] == "gmm"
    assert [h["manifold"] for h in metrics["history"]] == [True, False, False]
    # the first code-space update has no earlier code-space labels to compare with
    assert metrics["history"][1]["changed"] is None and metrics["history"][2]["changed"] is not None
    assert [h["phase"] for h in metrics["history"]] == ["pretrain", "refine", "refine"]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["manifold"] == "umap" and saved["history"][1]["manifold"] is False
    timings = json.loads((tmp_path / "run_info.json").read_text())["timings"]
    assert timings[0]["manifold_s"] > 0 and timings[1]["manifold_s"] == 0


class _LeavesClusterTwoEmpty:
    """A clusterer whose third cluster has a centre in the manifold but no members."""

    def __call__(self, space, k):
        from deepcluster.clustering.base import ClusterResult

        labels = (space[:, 0] > np.median(space[:, 0])).astype(np.int64)  # clusters 0 and 1
        centers = np.stack([space[labels == 0].mean(0), space[labels == 1].mean(0), space[0]])
        return ClusterResult(labels=labels, centers=centers)


@pytest.mark.parametrize("refine_method", ["dec", "dekm"])
def test_an_empty_manifold_cluster_gets_a_code_not_the_origin(refine_method, caplog):
    """An empty cluster has no mean code: its centre was zeros, and DEC then refined towards a
    centre at the origin, far from every code. It takes the code nearest its manifold centre."""
    from deepcluster.clustering.schedule import ClusteringSchedule, Update

    z, _ = blobs(n_per=30, k=3, d=6, seed=2)
    z = z + 50.0  # every code far from the origin
    callback = ClusteringCallback(
        _LeavesClusterTwoEmpty(),
        k=3,
        schedule=ClusteringSchedule(),
        manifold=lambda codes: codes[:, :2] * 10.0,
        refine_method=refine_method,
    )
    with caplog.at_level("WARNING"):
        out = callback._cluster_rank0(z, Update("epoch", True, True, "pretrain"), refining=False)
    centers = out["result"].centers
    np.testing.assert_allclose(centers[2], z[0])  # the code at that manifold centre
    np.testing.assert_allclose(centers[:2], cluster_means(z, out["result"].labels, 3)[:2])
    assert "1 of 3 clusters found in the manifold are empty" in caplog.text
    if refine_method == "dec":
        np.testing.assert_allclose(out["targets"]["centers"][2].numpy(), z[0], rtol=1e-6)


def test_umaps_numba_functions_are_cached_on_disk():
    """umap-learn's numba functions are not cache=True: without our cache request every process
    compiled them again (≈ 14 s before a seeded embedding of 1 797 codes on 2 cores). Once
    asked, every umap function caches, a compiled one has its index on disk for the next
    process (test below: no "Cannot cache" warning reaches the user)."""
    import umap
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    from deepcluster.clustering.manifold import cache_umap_compilation

    cache_umap_compilation()
    dispatchers = [
        obj
        for name, module in list(sys.modules.items())
        if module is not None and name.split(".")[0] == "umap"
        for obj in list(vars(module).values())
        if isinstance(obj, Dispatcher)
    ]
    assert len(dispatchers) > 20
    assert not [d for d in dispatchers if isinstance(d._cache, NullCache)]
    f = umap.distances.euclidean
    f(np.zeros(3, np.float32), np.ones(3, np.float32))
    assert list(Path(f._cache._cache_path).glob("distances.euclidean-*.nbi"))


def test_numbas_cannot_cache_warning_is_hidden_and_only_it(monkeypatch):
    """Some of pynndescent's functions cannot be cached: numba warns at each save. Fitting and
    transforming hide that warning (the cache was our request); any other warning passes."""
    import warnings

    import umap
    from numba.core.errors import NumbaWarning

    from deepcluster.clustering.manifold import transform

    def warn_and_embed(self, z):
        cannot = "Cannot cache compiled function 'f' as it uses dynamic globals"
        warnings.warn(NumbaWarning(cannot), stacklevel=2)
        warnings.warn("another warning", UserWarning, stacklevel=2)
        return np.zeros((len(z), self.n_components))

    monkeypatch.setattr(umap.UMAP, "fit_transform", warn_and_embed)
    monkeypatch.setattr(umap.UMAP, "transform", warn_and_embed)
    codes = np.random.default_rng(0).normal(size=(30, 4))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        UMAPManifold(n_components=2)(codes)
        transform(umap.UMAP(n_components=2), codes)
    assert [str(w.message) for w in seen] == ["another warning"] * 2
