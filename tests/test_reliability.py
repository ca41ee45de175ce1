"""Faults a long clustering run meets: kills, reruns, bad numbers, bad paths, DDP."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from deepcluster.models import CAE, DeepClusterModule, NonFiniteLossError
from tests.conftest import run_cli

# small but real: 600 digits, 2 reconstruction + 4 refinement epochs with mid-epoch updates
RUN = [
    "dataset=digits",
    "dataset.limit=600",
    "data.batch_size=32",
    "trainer.max_epochs=6",
    "refine=dekm",
    "pretrain_epochs=2",
    "refine.update_interval=7",
    "logger=csv",
    "plots=false",
    "trainer.enable_progress_bar=false",
    "seed=3",
    "manifold=none",  # UMAP is not what these test: it costs 25 s a process on one EPYC thread
]


def _cmd(*extra):
    return [sys.executable, "-m", "deepcluster", *RUN, *extra]


def _env():
    return {**os.environ, "WANDB_MODE": "offline"}


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    """Two uninterrupted runs of the same command (seed 3)."""
    dirs = []
    for name in ("ref_a", "ref_b"):
        out = tmp_path_factory.mktemp(name)
        proc = subprocess.run(
            _cmd(f"hydra.run.dir={out}"),
            cwd=out,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        dirs.append(out)
    return dirs


def test_same_seed_gives_identical_outputs(reference_runs):
    a, b = reference_runs
    assert (a / "metrics.json").read_text() == (b / "metrics.json").read_text()
    assert (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes()


def test_resume_after_sigkill_matches_uninterrupted_run(reference_runs, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _cmd(f"hydra.run.dir={out}"),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    # kill once the checkpoint of epoch ≥ 2 (refinement under way) is on disk
    while time.time() < deadline and proc.poll() is None:
        if (
            last.is_file()
            and len(
                torch.load(last, weights_only=True)["callbacks"]["ClusteringCallback"]["history"]
            )
            >= 3
        ):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()

    resumed = subprocess.run(
        _cmd(f"hydra.run.dir={out}", "ckpt_path=last"),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    info = json.loads((out / "run_info.json").read_text())
    assert info["resumed_from"].endswith("last.ckpt")
    # the killed process's training counts in the run's wall time
    assert info["wall_s_total"] > info["wall_s"] + 1.0
    reference = reference_runs[0]
    assert (out / "metrics.json").read_text() == (reference / "metrics.json").read_text()
    assert (out / "predictions.csv").read_bytes() == (reference / "predictions.csv").read_bytes()


def _run_in_process(compose, *extra):
    """The command's run without a second interpreter (10 s of imports on a 2-core EPYC): the
    resumes below need the real kill of a process no more than the SIGKILL test above does."""
    from deepcluster.run import run

    return run(compose(*RUN, *extra))


def test_a_run_killed_after_its_refinement_stopped_resumes_to_the_same_result(
    compose, tmp_path, caplog
):
    """Converged, checkpointed, killed before its results: the resume writes them, and
    refines no further (the stop is in the checkpoint)."""
    import logging
    import shutil

    stop_early = ["refine.tol=0.5", "refine.update_interval=0"]
    done = tmp_path / "done"
    metrics = _run_in_process(compose, *stop_early, f"output_dir={done}")
    assert metrics["stop_reason"].startswith("converged") and metrics["epochs"] < 6
    killed = tmp_path / "killed"
    shutil.copytree(done, killed)
    for name in ("metrics.json", "predictions.csv", "run_info.json", "codes.npy"):
        (killed / name).unlink()
    with caplog.at_level(logging.INFO):
        _run_in_process(
            compose,
            *stop_early,
            f"output_dir={killed}",
            f"ckpt_path={killed}/checkpoints/last.ckpt",
        )
    assert "refinement had stopped" in caplog.text
    assert (killed / "metrics.json").read_text() == (done / "metrics.json").read_text()
    assert (killed / "predictions.csv").read_bytes() == (done / "predictions.csv").read_bytes()


def test_a_run_killed_after_its_last_epoch_resumes_to_the_same_result(
    reference_runs, compose, tmp_path, caplog
):
    """Its last epoch checkpointed, killed before its results (a crash in the figures, Ctrl-C):
    nothing trains on resume, and its last update, redone, gives back the very results (it
    used to cluster as a pretraining monitor does: another space, 9 % of labels moved)."""
    import logging
    import shutil

    reference = reference_runs[0]
    metrics = json.loads((reference / "metrics.json").read_text())
    assert metrics["epochs"] == 6 and metrics["history"][-1]["phase"] == "refine"
    killed = tmp_path / "killed"
    shutil.copytree(reference, killed)
    for name in ("metrics.json", "predictions.csv", "run_info.json", "codes.npy"):
        (killed / name).unlink()
    ckpt = f"ckpt_path={killed}/checkpoints/last.ckpt"
    with caplog.at_level(logging.INFO):
        _run_in_process(compose, f"output_dir={killed}", ckpt)
    assert "had finished training" in caplog.text
    assert (killed / "metrics.json").read_text() == (reference / "metrics.json").read_text()
    assert (killed / "predictions.csv").read_bytes() == (reference / "predictions.csv").read_bytes()
    # continued into a new folder (the run gets its own folder): Lightning writes no
    # checkpoint there, yet predict needs the weights
    elsewhere = tmp_path / "elsewhere"
    _run_in_process(compose, f"output_dir={elsewhere}", ckpt)
    from deepcluster.predict import Predictor

    weights = Predictor(elsewhere).weights_file()
    assert weights == elsewhere / "checkpoints" / "last.ckpt" and weights.is_file()
    assert (elsewhere / "predictions.csv").read_bytes() == (
        reference / "predictions.csv"
    ).read_bytes()


def test_checkpoint_loads_weights_only(reference_runs):
    ckpt = torch.load(reference_runs[0] / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["refinement"]["targets"].shape == (600, 10)  # refinement targets travel along
    assert "targets" not in ckpt["state_dict"]  # not a buffer: DDP does not broadcast it
    assert ckpt["callbacks"]["ClusteringCallback"]["history"]


def test_nan_loss_stops_with_clear_message(tmp_path):
    """A run that stopped during training is not a refused command: status 1 (2 says
    "refused, nothing trained"), and its timestamped folder under outputs/ stays, with
    the log that says what happened (a refused command's empty folder goes)."""
    proc = run_cli("optim.lr=1e30", "logger=none", cwd=tmp_path, timeout=300)
    assert proc.returncode == 1
    assert "the training loss became nan at epoch 0, step" in proc.stderr
    assert proc.stderr.count("the training loss became nan") == 1  # said once
    assert "No checkpoint had been written yet." in proc.stderr  # as a stopped run says it
    assert "Traceback" not in proc.stderr
    (log,) = (tmp_path / "outputs").rglob("cli.log")
    assert "the training loss became nan" in log.read_text()


def test_nan_loss_in_module_names_epoch_and_step():
    module = DeepClusterModule(CAE(), nan_check_every=4)
    with torch.no_grad():
        module.model.encoder[0].weight.fill_(float("nan"))
    batch = (torch.rand(2, 1, 28, 28), torch.tensor([0, 1]))
    module.training_step(batch, 2)  # no check between checks: the GPU is never made to wait
    with pytest.raises(NonFiniteLossError, match=r"nan at epoch 0, step 0 \(checked every 4"):
        module.training_step(batch, 3)


def test_unwritable_output_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    proc = run_cli("logger=none", f"hydra.run.dir={blocker}/run", cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert str(blocker) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_secret_in_saved_files(tmp_path):
    secret = "wandb-secret-0123456789abcdef"
    proc = run_cli(
        "trainer.max_epochs=1",
        "manifold=none",
        "dataset.limit=300",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
        env={"WANDB_API_KEY": secret},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(tmp_path.glob("wandb/offline-run-*"))
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_ddp_matches_single_process(tmp_path):
    common = [
        "dataset=digits",
        "dataset.limit=768",
        "data.batch_size=256",  # 3 steps an epoch: the setting the tolerance was measured with
        "trainer.max_epochs=4",
        "logger=csv",
        "plots=false",
        "trainer.enable_progress_bar=false",
        "refine=dekm",
        "pretrain_epochs=2",
        "refine.update_interval=2",
        "manifold=none",
    ]
    accs, losses = {}, {}
    for name, extra in (("single", []), ("ddp", ["trainer=ddp"])):
        out = tmp_path / name
        proc = run_cli(*common, *extra, f"hydra.run.dir={out}", cwd=tmp_path, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        metrics = json.loads((out / "metrics.json").read_text())
        accs[name] = metrics["acc"]
        losses[name] = [h["loss"] for h in metrics["history"] if h.get("phase") == "pretrain"]
        checks = json.loads((out / "run_info.json").read_text())["ddp_rank_agreement_checks"]
        # under DDP, every update (epoch ends and refinement steps) compared the ranks' labels
        # and targets; a mismatch would have stopped the run
        assert (checks > 4) if name == "ddp" else (checks == 0), (name, checks)
    # the same training, the batches split over two ranks: the reconstruction losses agree
    # (0.2-0.3 % apart on all digits, AMD EPYC; 0.07 % on these 768, AVX2 EPYC); four epochs
    # leave the partition near chance, so its ACC differs by its noise (0.013-0.021): a loose
    # check only
    assert len(losses["ddp"]) == len(losses["single"]) == 2, losses
    for a, b in zip(losses["ddp"], losses["single"]):
        assert abs(a - b) <= 0.02 * b, losses
    assert abs(accs["ddp"] - accs["single"]) <= 0.05, accs


def test_sigterm_stops_with_status_1_and_says_how_to_continue(tmp_path):
    """Lightning turns SIGTERM (`kill`, `timeout`, a scheduler's preemption) into a SystemExit
    without a code: the run stopped with status 0 and no word, and a reproduction or a job
    script took it for finished."""
    out = tmp_path / "stopped"
    proc = subprocess.Popen(
        _cmd(f"hydra.run.dir={out}", "trainer.max_epochs=400", "refine=none"),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not last.is_file():
        time.sleep(0.2)
    assert proc.poll() is None, "run ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr[-2000:]
    assert "stopped by SIGTERM at epoch" in stderr
    assert f"Its last checkpoint is kept ({last}): ckpt_path=last continues" in stderr
    assert last.is_file() and not (out / "metrics.json").exists()


def test_nan_codes_at_a_step_update_are_named_as_divergence_not_a_clustering_failure():
    """A refinement update every few steps can embed before the loss is next checked (every
    50 steps): k-means then failed with 'Input contains NaN' and no advice."""
    from types import SimpleNamespace

    from deepcluster.callbacks import ClusteringCallback
    from deepcluster.clustering.kmeans import KMeans
    from deepcluster.clustering.schedule import ClusteringSchedule, Update

    module = DeepClusterModule(CAE())
    with torch.no_grad():
        module.model.encoder[0].weight.fill_(float("nan"))
    images = torch.rand(6, 1, 28, 28)
    trainer = SimpleNamespace(
        datamodule=SimpleNamespace(train_images=images), current_epoch=3, global_step=41
    )
    callback = ClusteringCallback(KMeans(), k=2, schedule=ClusteringSchedule(refine=True))
    update = Update("step", False, False, "refine")
    with pytest.raises(NonFiniteLossError, match=r"codes became NaN .* epoch 3, step 41 \(6 of"):
        callback._update(trainer, module, update)


def test_sigterm_outside_fit_stops_with_the_message_and_the_handler_comes_back():
    """Clustering a trained model and writing the results run outside Lightning's fit: a
    SIGTERM there ended the run silently with status 143, no word of what continues it."""
    import os

    from deepcluster.errors import RunStopped
    from deepcluster.run import stop_on_sigterm

    before = signal.getsignal(signal.SIGTERM)
    restore = stop_on_sigterm("after training, before its results were written. X")
    try:
        with pytest.raises(RunStopped, match="stopped by SIGTERM after training, before its"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs at the next bytecode
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) is before
