"""The bugs a full review found (issue 12), one test each, and the core they were fixed in."""

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from deepcluster import cli, resume
from deepcluster.build import build_parts, instantiate
from deepcluster.clustering.kmeans import KMeans, _lloyd, kmeans, kmeans_torch
from deepcluster.config import validate
from deepcluster.errors import ConfigError
from deepcluster.models import CAE, DeepClusterModule
from tests.conftest import CONF_DIR, ROOT, run_cli

TINY = [
    "dataset=synthetic",
    "dataset.n=96",
    "trainer.max_epochs=1",
    "logger=none",
    "plots=false",
    "baseline=false",
    "trainer.enable_progress_bar=false",
]


# 1. a sweep's optimiser never sees a label-based score ---------------------------------
def test_hydra_main_returns_a_label_free_objective(compose, tmp_path):
    cfg = compose(*TINY, f"output_dir={tmp_path}")
    value = cli._hydra_main(cfg)  # Hydra passes a given config straight through
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert value == pytest.approx(metrics["silhouette"])
    assert value != metrics["acc"]


def test_a_failed_sweep_job_returns_nan_not_none(compose, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "is_multirun", lambda: True)
    value = cli._hydra_main(compose(*TINY, "k=500", f"output_dir={tmp_path}"))
    assert value is not None and math.isnan(value)
    assert "k=500" in json.loads((tmp_path / "failed.json").read_text())["error"]


# 2. dataset.num_classes reaches the dataset --------------------------------------------
def test_num_classes_override_reaches_the_dataset(compose):
    cfg = compose("dataset=synthetic", "dataset.num_classes=6")
    dm = instantiate(cfg.dataset, "dataset").prepare()
    assert cfg.k == 6 and dm.num_classes == 6 and len(np.unique(dm.labels)) == 6


# 4. every bad value stops before any data loads, naming its key ------------------------
@pytest.mark.parametrize(
    "override, needle",
    [
        ("refine.tol=2", "refine.tol=2"),
        ("refine.update_interval=-1", "refine.update_interval=-1"),
        ("refine.recon_weight=-1", "refine.recon_weight=-1"),
        ("embed_batch_size=0", "embed_batch_size=0"),
        ("cluster_every_n_epochs=0", "cluster_every_n_epochs=0"),
        ("k_search.criterion=gap9", "k_search.criterion='gap9'"),
        ("~clusterer.name", "the clusterer option has no `name:` key"),
        ("clusterer.n_init=0", "clusterer.n_init=0"),
        ("model.code_dim=0", "model.code_dim=0"),
        ("dataset.limit=10.5", "dataset.limit=10.5"),
        ("dataset.limit=true", "dataset.limit=True"),
        ("dataset.image_size=28.0", "dataset.image_size=28.0"),
        ("dataset.channels=3.0", "dataset.channels=3.0"),
    ],
)
def test_bad_values_fail_before_the_data_loads(compose, override, needle, tmp_path):
    # the data root does not exist: a check that ran after loading would report that instead
    cfg = compose(
        "dataset=mnist",
        f"data.root={tmp_path}/absent",
        "data.download=false",
        override,
        f"output_dir={tmp_path}",
    )
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("`", ".")):
        validate(cfg)
        build_parts(cfg)


# 5. ckpt_path=last: a command's runs live under one folder -----------------------------
def _fake_run(folder, name, ckpt=False, finished=False):
    run_dir = folder / name
    (run_dir / "checkpoints").mkdir(parents=True)
    if ckpt:
        (run_dir / "checkpoints" / "last.ckpt").write_text("x")
    if finished:
        (run_dir / "metrics.json").write_text("{}")
    return run_dir


def test_last_continues_the_newest_run_of_the_same_command(tmp_path):
    key = tmp_path / resume.run_key("k=5,seed=1")
    _fake_run(key, "2026-11-01_10-00-00", ckpt=True)
    newer = _fake_run(key, "2026-11-02_09-00-00", ckpt=True)
    _fake_run(tmp_path / resume.run_key("k=6,seed=1"), "2026-11-03_09-00-00", ckpt=True)
    now = _fake_run(key, "2026-11-04_09-00-00")
    plan = resume.resolve("last", now, search_siblings=True)
    assert plan.ckpt == str(newer / "checkpoints" / "last.ckpt")  # never the k=6 run


def test_last_never_takes_another_command_whose_folder_name_came_out_the_same(tmp_path):
    """`dataset.path=/t/my tiles` and `dataset.path=/t/my_tiles` give one folder name (a space
    is not kept): `ckpt_path=last` on one reported the other's result as its own."""
    spaced, plain = "dataset.path=/t/my tiles", "dataset.path=/t/my_tiles"
    assert resume.run_key(spaced) == resume.run_key(plain)
    key = tmp_path / resume.run_key(plain)

    def recorded(run_dir, dirname):
        (run_dir / ".hydra").mkdir()
        OmegaConf.save(
            {"hydra": {"job": {"override_dirname": dirname}}}, run_dir / ".hydra" / "hydra.yaml"
        )
        return run_dir

    recorded(_fake_run(key, "2026-11-01_10-00-00", ckpt=True, finished=True), plain)
    own = recorded(_fake_run(key, "2026-11-01_09-00-00", ckpt=True), spaced)
    now = recorded(_fake_run(key, "2026-11-02_10-00-00"), spaced)
    plan = resume.resolve("last", now, search_siblings=True)
    assert plan.finished is None and plan.ckpt == str(own / "checkpoints" / "last.ckpt")


def test_last_on_a_finished_run_says_so(tmp_path):
    key = tmp_path / "default"
    done = _fake_run(key, "2026-11-01_10-00-00", ckpt=True, finished=True)
    plan = resume.resolve("last", _fake_run(key, "2026-11-02_10-00-00"), search_siblings=True)
    assert plan.finished == done and plan.ckpt is None


def test_last_in_a_sweep_job_or_custom_dir_looks_only_at_its_own_folder(tmp_path):
    _fake_run(tmp_path, "0", ckpt=True)
    assert resume.resolve("last", _fake_run(tmp_path, "1"), search_siblings=False).ckpt is None


def test_a_run_continued_from_a_checkpoint_file_is_another_command(tmp_path):
    """`k=3 ckpt_path=/pre/…/last.ckpt` (a shared pretraining continued) must not be what a
    later `k=3 ckpt_path=last` continues or reports as finished."""
    ckpt = tmp_path / "pre" / "checkpoints" / "last.ckpt"
    key = resume.run_key("k=3", str(ckpt))
    assert key.startswith("k=3,from=pre-") and key == resume.run_key("k=3", str(ckpt))
    assert resume.run_key("k=3", "last") == resume.run_key("k=3", None) == "k=3"
    assert resume.run_key("", str(ckpt)).startswith("from=pre-")
    assert key != resume.run_key("k=3", str(tmp_path / "other" / "checkpoints" / "last.ckpt"))
    # a cluster-only run's weights.ckpt is named after that run, not the folder above it
    reading = tmp_path / "outputs" / "reading" / "weights.ckpt"
    assert resume.run_key("k=3", str(reading)).startswith("k=3,from=reading-")


def test_last_names_the_same_command_begun_from_a_file_rather_than_start_over(tmp_path):
    """`k=3 ckpt_path=<file>` interrupted, then `k=3 ckpt_path=last`: that run is another
    command (its key has from=…), but starting k=3 from nothing would throw the pretraining
    away with a warning only. It is refused, naming the checkpoint to give."""
    pre = tmp_path / "pre" / "checkpoints" / "last.ckpt"
    _fake_run(tmp_path / resume.run_key("k=3", str(pre)), "2026-11-01_10-00-00", ckpt=True)
    _fake_run(tmp_path / resume.run_key("k=4", str(pre)), "2026-11-02_10-00-00", ckpt=True)
    now = _fake_run(tmp_path / resume.run_key("k=3"), "2026-11-03_10-00-00")
    with pytest.raises(ConfigError, match="ckpt_path=.*2026-11-01_10-00-00/checkpoints/last"):
        resume.resolve("last", now, search_siblings=True)
    alone = _fake_run(tmp_path / resume.run_key("k=5"), "2026-11-03_10-00-00")
    assert resume.resolve("last", alone, search_siblings=True).ckpt is None  # fresh, as before
    # overrides long enough to be hashed: the same, the file's run still named after the hash
    long = "dataset.path=" + "d" * 150 + ",k=3"
    _fake_run(tmp_path / resume.run_key(long, str(pre)), "2026-11-04_10-00-00", ckpt=True)
    now = _fake_run(tmp_path / resume.run_key(long), "2026-11-05_10-00-00")
    with pytest.raises(ConfigError, match="2026-11-04_10-00-00/checkpoints/last"):
        resume.resolve("last", now, search_siblings=True)


def test_run_key_is_a_safe_stable_folder_name():
    assert resume.run_key("") == "default"
    assert resume.run_key("data.root=/a/b,k=5") == "data.root=_a_b,k=5"
    long = resume.run_key("x=" + "y" * 300)
    assert len(long) <= 120 and long == resume.run_key("x=" + "y" * 300)


def test_same_command_twice_with_last_reports_the_finished_run(tmp_path):
    args = [
        "dataset=synthetic",
        "dataset.n=64",
        "trainer.max_epochs=1",
        "logger=none",
        "plots=false",
    ]
    first = run_cli(*args, cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_cli(*args, "ckpt_path=last", cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already finished" in again.stdout
    runs = list((tmp_path / "outputs").glob("*/*/metrics.json"))
    assert len(runs) == 1  # nothing was trained the second time
    # and no empty timestamped folder (only .hydra/ and a log) is left beside the run
    assert [p.parent for p in runs] == list((tmp_path / "outputs").glob("*/*"))


def test_a_checkpoint_at_max_epochs_is_clustered_not_lost(compose, tmp_path):
    """A run stopped after its last checkpoint but before its results: run again from that
    checkpoint, nothing trains and the results are written (it used to crash)."""
    from deepcluster.run import run

    first = tmp_path / "first"
    run(compose(*TINY, f"output_dir={first}"))
    (first / "metrics.json").unlink()
    again = run(compose(*TINY, f"output_dir={first}", f"ckpt_path={first}/checkpoints/last.ckpt"))
    assert (first / "metrics.json").is_file() and (first / "codes.npy").is_file()
    assert again["epochs"] == 1 and again["k"] == 4


def test_a_new_run_in_a_finished_runs_folder_moves_its_results_aside(
    compose, tmp_path, monkeypatch
):
    """Else, stopped early, the new run would look finished with the old numbers, and
    deepcluster-predict would mix the earlier clusterer with the new config and weights. A
    new run refused by a data check leaves the earlier run as it was."""
    from deepcluster.errors import ConfigError
    from deepcluster.run import run

    run(compose(*TINY, f"output_dir={tmp_path}"))
    first = (tmp_path / "metrics.json").read_text()
    outputs = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ConfigError, match="k=5000"):
        run(compose(*TINY, f"output_dir={tmp_path}", "k=5000"))
    assert sorted(p.name for p in tmp_path.iterdir()) == outputs
    assert (tmp_path / "metrics.json").read_text() == first

    class Stopped(Exception):
        pass

    def stop_at_fit(*args, **kwargs):
        raise Stopped((tmp_path / "metrics.json").exists())

    monkeypatch.setattr("lightning.pytorch.Trainer.fit", stop_at_fit)
    with pytest.raises(Stopped) as stopped:
        run(compose(*TINY, f"output_dir={tmp_path}", "k=3"))
    assert stopped.value.args == (False,)  # gone before training began
    previous = tmp_path / "previous"
    assert (previous / "metrics.json").read_text() == first
    # and its checkpoints: else ckpt_path=last (or a NaN's "last good checkpoint") would name
    # the earlier run's finished weights as this run's; and what predict loads
    assert not (tmp_path / "checkpoints").exists()
    assert (previous / "checkpoints" / "last.ckpt").is_file()
    for name in ("clusterer.joblib", "predictions.csv", "codes.npy", "run_info.json"):
        assert (previous / name).exists() and not (tmp_path / name).exists(), name
    assert "k: 3" in (tmp_path / "config.yaml").read_text()  # this run's


def test_a_run_continuing_its_own_checkpoint_keeps_it(tmp_path):
    from deepcluster.run import set_aside_earlier_run

    ckpt = tmp_path / "checkpoints" / "epoch001-step4.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_text("x")
    (tmp_path / "clusterer.joblib").write_text("x")
    set_aside_earlier_run(tmp_path, str(ckpt))
    assert ckpt.is_file() and (tmp_path / "clusterer.joblib").is_file()
    set_aside_earlier_run(tmp_path, str(tmp_path.parent / "pre" / "last.ckpt"))  # another's
    assert (tmp_path / "previous" / "checkpoints" / ckpt.name).is_file() and not ckpt.exists()
    assert (tmp_path / "previous" / "clusterer.joblib").is_file()


@pytest.mark.parametrize("epochs", [0, 2])
def test_a_checkpoint_that_does_not_fit_is_refused_before_the_folder_changes(
    compose, tmp_path, epochs
):
    """The weights were found not to fit only inside training: by then the folder's earlier
    run had gone to previous/, config.yaml and weights.ckpt were written, a refused command
    (status 2, "nothing trained") had changed a finished run's folder."""
    from deepcluster.errors import ConfigError
    from deepcluster.run import run

    source, folder = tmp_path / "source", tmp_path / "finished"
    run(compose(*TINY, f"output_dir={source}"))
    run(compose(*TINY, f"output_dir={folder}"))
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(ConfigError, match="do not fit the model this config builds"):
        run(
            compose(
                *TINY,
                "model.code_dim=5",
                f"trainer.max_epochs={epochs}",
                f"ckpt_path={source}/checkpoints/last.ckpt",
                f"output_dir={folder}",
            )
        )
    assert sorted(p.name for p in folder.iterdir()) == before  # no previous/, nothing new


def test_a_cluster_only_runs_weights_are_refused_for_training_before_the_folder_changes(
    compose, tmp_path
):
    """A cluster-only run's weights.ckpt has no optimizer state: given to training, Lightning
    failed with a bare KeyError ('pytorch-lightning_version') after the folder's outputs had
    gone to previous/. Now: refused first, naming the checkpoint it was copied from."""
    from deepcluster.errors import ConfigError
    from deepcluster.run import run

    source, folder = tmp_path / "source", tmp_path / "reading"
    run(compose(*TINY, f"output_dir={source}"))
    last = source / "checkpoints" / "last.ckpt"
    run(compose(*TINY, "trainer.max_epochs=0", f"ckpt_path={last}", f"output_dir={folder}"))
    before = sorted(p.name for p in folder.iterdir())
    assert "weights.ckpt" in before
    with pytest.raises(ConfigError, match="holds weights only") as refused:
        run(
            compose(
                *TINY,
                "trainer.max_epochs=2",
                f"ckpt_path={folder}/weights.ckpt",
                f"output_dir={folder}",
            )
        )
    assert f"ckpt_path={last.resolve()}" in str(refused.value)
    assert sorted(p.name for p in folder.iterdir()) == before  # no previous/, nothing new
    # clustered again, as the message offers: its source is the reading's run, not the folder
    # above it (source_finished_at was looked up two levels up, as for checkpoints/last.ckpt)
    again = tmp_path / "again"
    weights = f"ckpt_path={folder}/weights.ckpt"
    run(compose(*TINY, "trainer.max_epochs=0", weights, f"output_dir={again}"))
    source = json.loads((folder / "run_info.json").read_text())["finished_at"]
    assert json.loads((again / "run_info.json").read_text())["source_finished_at"] == source
    # a reading of a reading still names the training checkpoint, not a weights-only one
    train_again = ("trainer.max_epochs=2", f"ckpt_path={again}/weights.ckpt")
    with pytest.raises(ConfigError, match="holds weights only") as refused:
        run(compose(*TINY, *train_again, f"output_dir={again}"))
    assert f"ckpt_path={last.resolve()}" in str(refused.value)
    # a folder re-reading its own weights.ckpt: the source is the reading those weights came
    # from (its run_info.json was read after it had moved to previous/: null)
    run(compose(*TINY, "trainer.max_epochs=0", weights, f"output_dir={folder}"))
    assert (folder / "previous" / "weights.ckpt").is_file()
    assert json.loads((folder / "run_info.json").read_text())["source_finished_at"] == source
    # the source gone (a source run that trained on keeps only its newest epoch file): the
    # message offers no file that would fail too
    last.resolve().unlink()
    with pytest.raises(ConfigError, match="continue a run's checkpoints/last.ckpt instead"):
        run(compose(*TINY, *train_again, f"output_dir={again}"))


def test_clustering_a_runs_own_checkpoint_only_keeps_the_trained_runs_outputs(tmp_path):
    """trainer.max_epochs=0 with the folder's own checkpoint is another reading of the run
    (clusterer=ward, …): it wrote over the trained run's predictions, clusterer and config,
    and only metrics.json went to previous/."""
    from deepcluster.run import set_aside_earlier_run

    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_text("x")
    for name in ("metrics.json", "predictions.csv", "clusterer.joblib", "config.yaml"):
        (tmp_path / name).write_text(name)
    assert set_aside_earlier_run(tmp_path, str(ckpt), cluster_only=True) == str(ckpt)
    assert ckpt.is_file()
    assert sorted(p.name for p in (tmp_path / "previous").iterdir()) == [
        "clusterer.joblib",
        "config.yaml",
        "metrics.json",
        "predictions.csv",
    ]


def test_earlier_runs_are_kept_and_a_checkpoint_given_from_one_survives(tmp_path):
    # a review's case: the folder used three times, the third run re-clustering the first
    # run's checkpoint from previous/; previous/ was emptied before the checkpoint loaded, and
    # the same file name then held the second run's weights
    from deepcluster.run import set_aside_earlier_run

    def a_run(tag: str) -> None:
        (tmp_path / "checkpoints").mkdir()
        (tmp_path / "checkpoints" / "epoch001-step16.ckpt").write_text(tag)
        (tmp_path / "metrics.json").write_text(tag)

    a_run("k=3")
    assert set_aside_earlier_run(tmp_path, None) is None
    a_run("k=2")
    given = tmp_path / "previous" / "checkpoints" / "epoch001-step16.ckpt"
    assert set_aside_earlier_run(tmp_path, str(given)) == str(given)  # not moved
    assert given.read_text() == "k=3"
    assert (tmp_path / "previous.2" / "metrics.json").read_text() == "k=2"
    # a cluster-only run's weights.ckpt, given again to the same folder: it moves with its
    # run, and the checkpoint to load follows it
    (tmp_path / "weights.ckpt").write_text("w")
    moved = set_aside_earlier_run(tmp_path, str(tmp_path / "weights.ckpt"))
    assert moved == str(tmp_path / "previous.3" / "weights.ckpt") and Path(moved).is_file()
    assert {p.name for p in tmp_path.iterdir()} == {"previous", "previous.2", "previous.3"}


def test_a_refinement_that_cannot_start_is_warned_of(compose, caplog):
    from deepcluster.run import warn_if_refinement_never_runs

    warn_if_refinement_never_runs(compose(*TINY, "refine=dekm", "pretrain_epochs=3"))
    assert "refine=dekm will not train: trainer.max_epochs=1" in caplog.text
    caplog.clear()
    warn_if_refinement_never_runs(compose(*TINY, "refine=none", "pretrain_epochs=3"))
    warn_if_refinement_never_runs(
        compose(*TINY, "refine=dekm", "pretrain_epochs=1", "trainer.max_epochs=2")
    )
    assert "will not train" not in caplog.text


def test_the_refinement_warning_does_not_precede_an_unrelated_error(compose, tmp_path, caplog):
    """A run refused for another reason (here: k not below the number of images) says only
    that; the refinement warning is for a run that trains."""
    from deepcluster.run import run

    cfg = compose(*TINY, "refine=dekm", "pretrain_epochs=3", "k=500", f"output_dir={tmp_path}")
    with pytest.raises(ConfigError, match="k=500"):
        run(cfg)
    assert "will not train" not in caplog.text


def test_continuing_a_checkpoint_with_another_k_uses_the_new_k(compose, tmp_path):
    """A shared pretraining (k=4) continued with k=3: the configured k wins (it used to keep
    the checkpoint's k)."""
    from deepcluster.run import run

    pre = tmp_path / "pre"
    run(compose(*TINY, f"output_dir={pre}"))
    cont = run(
        compose(
            *TINY,
            "k=3",
            "trainer.max_epochs=2",
            f"output_dir={tmp_path / 'k3'}",
            f"ckpt_path={pre}/checkpoints/last.ckpt",
        )
    )
    assert cont["k"] == 3
    predictions = pd.read_csv(tmp_path / "k3" / "predictions.csv")
    assert predictions["cluster"].nunique() <= 3


# 6. torch k-means: the same quality as scikit-learn's, empty clusters relocated ---------
def test_torch_kmeans_inertia_within_0_1_percent_of_sklearn():
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float32)  # 1 797 × 64: overlapping clusters
    ref, ours = kmeans(x, 10, seed=0), kmeans_torch(x, 10, seed=0)
    assert abs(ours.objective - ref.objective) / ref.objective < 1e-3


def test_torch_kmeans_keeps_its_precision_when_codes_share_a_large_offset():
    from sklearn.datasets import make_blobs

    x, _ = make_blobs(3000, n_features=10, centers=10, cluster_std=0.3, random_state=0)
    x = (x + 1000.0).astype(np.float32)  # float32 ‖x‖² ≈ 1e7 swamps a spread of 0.3
    ref, ours = kmeans(x, 10, seed=0), kmeans_torch(x, 10, seed=0, n_init=4)
    assert abs(ours.objective - ref.objective) / ref.objective < 1e-3
    np.testing.assert_allclose(ours.centers.mean(), x.mean(), rtol=1e-4)  # offset given back


def test_torch_kmeans_seed_none_draws_fresh_starts_and_nan_is_refused():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)).astype(np.float32)
    runs = [kmeans_torch(x, 8, n_init=1, max_iter=1, seed=None).labels for _ in range(4)]
    assert any((r != runs[0]).any() for r in runs[1:])
    x[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        kmeans_torch(x, 3)


def test_torch_kmeans_relocates_an_empty_cluster():
    # off the origin: an empty centre left at sums / 1 = 0 must not land on a point by chance
    x = torch.tensor([[50.0], [50.1], [60.0], [60.1]])
    centers = torch.tensor([[50.05], [55.0], [150.0]])  # the third centre attracts no point
    _, moved, _ = _lloyd(x, centers, max_iter=1, threshold=0.0)
    assert float(moved[2]) == pytest.approx(60.1)  # to the point farthest from its centre
    # which leaves the cluster it was in, as in scikit-learn (its mean stayed 60.05)
    assert float(moved[1]) == pytest.approx(60.0) and float(moved[0]) == pytest.approx(50.05)
    labels, _, _ = _lloyd(x, centers, max_iter=10, threshold=0.0)
    assert len(torch.unique(labels)) == 3  # no stale centre left behind


def test_kmeans_backend_is_chosen_by_the_config_not_the_machine():
    with pytest.raises(ValueError, match="backend='auto' must be one of sklearn, torch"):
        KMeans(backend="auto")
    assert KMeans().backend == "sklearn"


def test_torch_kmeans_stays_on_the_cpu_when_told_even_beside_a_gpu(monkeypatch):
    """backend=torch ran on the GPU whenever there was one (CUDA's random stream: other labels
    for the same config and seed); clusterer.device=cpu keeps it where it is asked."""
    x = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert KMeans(backend="torch", device="cpu")(x, 3).extra["backend"] == "torch:cpu"
    with pytest.raises(ValueError, match="clusterer.device='gpu' must be one of auto, cpu, cuda"):
        KMeans(backend="torch", device="gpu")


# 7. DDP: no buffer broadcast, no unused-parameter search, errors reach every rank -------
def test_refinement_state_is_not_a_ddp_buffer():
    module = DeepClusterModule(CAE())
    module.set_targets(torch.eye(10), torch.zeros(5, 10))
    assert not {"rotation", "targets"} & {name for name, _ in module.named_buffers()}


def test_refinement_leaves_the_decoder_alone():
    torch.manual_seed(0)
    module = DeepClusterModule(CAE())
    module.set_targets(torch.eye(10), torch.randn(4, 10))
    loss = module.training_step((torch.rand(4, 1, 28, 28), torch.arange(4)), 0)
    loss.backward()
    module.on_after_backward()
    assert all(p.grad is None for p in module.model.decoder.parameters())
    assert all(p.grad is not None for p in module.model.encoder.parameters())


def test_ddp_config_searches_no_unused_parameters_and_uses_gpus_when_there_are():
    node = OmegaConf.load(CONF_DIR / "trainer" / "ddp.yaml")
    assert node.strategy == "ddp" and node.accelerator == "auto"


def test_ddp_rank_zero_clustering_error_stops_every_rank(tmp_path):
    started = time.time()
    proc = run_cli(
        "dataset=digits",
        "trainer=ddp",
        "trainer.max_epochs=1",
        "manifold=none",
        "logger=none",
        "plots=false",
        "clusterer._target_=tests.helpers.FailOnRankZero",
        f"hydra.run.dir={tmp_path}",
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "clustering failed" in proc.stderr and "rank 0 refuses" in proc.stderr
    assert time.time() - started < 200  # not the process group's 30-minute timeout


# 9. messages a new user meets ----------------------------------------------------------
def test_missing_mnist_is_one_short_paragraph(tmp_path):
    proc = run_cli(
        "dataset=mnist",
        f"data.root={tmp_path}/none",
        "logger=none",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("no 'all' files found") == 1
    assert "Failed to download" not in proc.stderr + proc.stdout  # torchvision's chatter
    assert "Traceback" not in proc.stderr


def test_last_with_other_epochs_names_the_run_to_train_further(tmp_path, caplog):
    # the epochs are part of the folder's key, so raising trainer.max_epochs with
    # ckpt_path=last started from nothing with no word of the 20-epoch run beside it
    earlier = tmp_path / "k=3,trainer.max_epochs=20" / "2026-12-01_10-00-00" / "checkpoints"
    earlier.mkdir(parents=True)
    (earlier / "last.ckpt").write_text("x")
    other = tmp_path / "k=4,trainer.max_epochs=20" / "2026-12-01_11-00-00" / "checkpoints"
    other.mkdir(parents=True)
    (other / "last.ckpt").write_text("x")
    out_dir = tmp_path / "k=3,trainer.max_epochs=40" / "2026-12-05_09-00-00"
    out_dir.mkdir(parents=True)
    with caplog.at_level("WARNING"):
        assert resume.resolve("last", out_dir, search_siblings=True).ckpt is None
    assert f"give ckpt_path={earlier / 'last.ckpt'} with the new trainer.max_epochs" in caplog.text
    assert "k=4" not in caplog.text


def test_clusters_of_one_or_two_images_are_named(caplog):
    # a review's k=auto on 62 images: one cluster was a flat-colour and a 1×1 image
    from deepcluster.run import warn_about_cluster_sizes

    labels = np.array([0] * 60 + [1] * 58 + [2, 2])
    paths = [f"img{i}.png" for i in range(120)]
    with caplog.at_level("WARNING"):
        warn_about_cluster_sizes(labels, 3, paths)
    assert "1 cluster(s) hold only one or two images (img118.png, img119.png)" in caplog.text
    caplog.clear()
    warn_about_cluster_sizes(np.array([0] * 60 + [1] * 60), 2, paths)
    assert caplog.text == ""


def test_an_unwritable_output_folder_names_the_key_that_chose_it(tmp_path):
    """The error advised hydra.run.dir=<path> even when output_dir= had chosen the folder
    (output_dir wins, so the advice changed nothing)."""
    from deepcluster.run import check_writable

    blocked = tmp_path / "a_file"
    blocked.write_text("")
    cfg = OmegaConf.create({"output_dir": str(blocked / "run")})
    with pytest.raises(ConfigError, match=r"Choose another with output_dir=<path>"):
        check_writable(blocked / "run", cfg)
    with pytest.raises(ConfigError, match=r"Choose another with hydra\.run\.dir=<path>"):
        check_writable(blocked / "run", OmegaConf.create({"output_dir": None}))


def test_a_later_run_in_the_same_process_counts_only_its_own_time(compose, tmp_path):
    """A sweep's jobs run one after another in one process: job N's wall_s and startup_s
    counted the process's whole life, every job before it included."""
    from deepcluster.run import run

    run(compose(*TINY, f"output_dir={tmp_path}/a"))
    t0 = time.perf_counter()
    run(compose(*TINY, f"output_dir={tmp_path}/b"))
    took = time.perf_counter() - t0
    info = json.loads((tmp_path / "b" / "run_info.json").read_text())
    assert info["wall_s"] <= took + 0.5 and info["startup_s"] <= took
    from datetime import datetime, timezone

    ended = datetime.fromisoformat(info["finished_at"])  # UTC: the reproduction's tables read it
    assert abs((datetime.now(timezone.utc) - ended).total_seconds()) < 60
    # the network it built, resolved: a reproduction tells it from an experiment file changed since
    assert info["model_config"]["code_dim"] == 10 and "${" not in json.dumps(info["model_config"])
    # a run continuing another's checkpoint names which run of that folder it came from
    first = json.loads((tmp_path / "a" / "run_info.json").read_text())
    run(compose(*TINY, f"output_dir={tmp_path}/c", f"ckpt_path={tmp_path}/a/checkpoints/last.ckpt"))
    info = json.loads((tmp_path / "c" / "run_info.json").read_text())
    assert (
        info["source_finished_at"] == first["finished_at"] and first["source_finished_at"] is None
    )
