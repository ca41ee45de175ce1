"""The clustering schedule on plain arrays, and the callback driven by a fake trainer."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from deepcluster.callbacks import ClusteringCallback
from deepcluster.clustering.kmeans import KMeans
from deepcluster.clustering.schedule import ClusteringSchedule, Update
from deepcluster.errors import ClusteringError
from deepcluster.models import CAE, DeepClusterModule
from tests.test_clusterers import blobs


def epochs(schedule, n, refining_from=None):
    """[(epoch, update or None)] for n epochs; refining once the start update has happened."""
    out, refining = [], False
    for e in range(n):
        u = schedule.at_epoch_end(e, n, stopping=False, refining=refining)
        out.append(u)
        refining = refining or (u is not None and u.starts_refinement)
    return out


def test_monitoring_cadence_clusters_every_n_and_the_last_epoch():
    s = ClusteringSchedule(cluster_every_n_epochs=3)
    done = [e for e, u in enumerate(epochs(s, 8)) if u is not None]
    assert done == [2, 5, 7]  # (epoch + 1) % 3 == 0, and the last epoch
    assert s.at_epoch_end(0, 8, stopping=True, refining=False) is not None  # an early stop


def test_manifold_every_zero_epochs_goes_through_it_at_the_last_epoch_only():
    s = ClusteringSchedule(cluster_every_n_epochs=2, manifold=True, manifold_every_n_epochs=0)
    ups = epochs(s, 6)
    assert [u is not None and u.manifold for u in ups] == [False] * 5 + [True]
    assert [u is not None for u in ups] == [False, True, False, True, False, True]
    plain = epochs(ClusteringSchedule(cluster_every_n_epochs=2, manifold_every_n_epochs=2), 6)
    assert not any(u.manifold for u in plain if u is not None)  # no manifold: never through it


def test_refinement_starts_once_and_then_clusters_every_epoch_in_code_space():
    s = ClusteringSchedule(
        refine=True,
        pretrain_epochs=2,
        cluster_every_n_epochs=5,
        manifold=True,
        manifold_every_n_epochs=4,
    )
    ups = epochs(s, 6)
    assert ups[0] is None  # monitoring cadence: skipped
    assert ups[1].starts_refinement and ups[1].manifold  # the start goes through the manifold
    assert all(u.phase == "refine" and not u.manifold for u in ups[2:])  # one pipeline after
    assert not any(u.starts_refinement for u in ups[2:])


def test_pretrain_epochs_zero_starts_refinement_at_train_start():
    s = ClusteringSchedule(refine=True, pretrain_epochs=0)
    start = s.at_train_start(epoch=0, refining=False)
    assert start is not None and start.where == "start" and start.starts_refinement
    assert s.at_train_start(epoch=0, refining=True) is None  # resumed with targets: nothing
    assert ClusteringSchedule(refine=False).at_train_start(0, False) is None


def test_step_updates_only_while_refining_and_not_at_the_epoch_end():
    s = ClusteringSchedule(refine=True, update_interval=4)
    assert s.after_step(3, 10, refining=False) is None
    steps = [b for b in range(12) if s.after_step(b, 12, refining=True) is not None]
    assert steps == [3, 7]  # batch 11 is the last: the epoch end updates anyway
    assert s.refine_steps == 12


def updates_over(s, epochs_n, batches):
    """(global step, "step"/"epoch", refreshes) of every refinement update over the epochs."""
    out = []
    for e in range(epochs_n):
        for b in range(batches):
            if s.after_step(b, batches, refining=True) is not None:
                out.append((s.refine_steps, "step", True))
        u = s.at_epoch_end(e, epochs_n, stopping=False, refining=True)
        out.append((s.refine_steps, "epoch", u.refreshes))
    return out


def test_global_cadence_counts_steps_across_epochs():
    # DEC-DA's 140 steps on MNIST-test (40 batches an epoch): the epoch cadence would refresh
    # every 40 steps (each epoch end); the global one every 140, epoch ends scoring only
    s = ClusteringSchedule(refine=True, update_interval=140, cadence="global")
    ups = updates_over(s, 8, 40)
    assert [step for step, _, refreshes in ups if refreshes] == [140, 280]
    assert (280, "epoch", True) in ups  # due at an epoch end: the epoch end does it, once
    assert [step for step, where, _ in ups if where == "step"] == [140]
    scored = [step for step, _, refreshes in ups if not refreshes]
    assert scored == [40, 80, 120, 160, 200, 240, 320]
    epoch_cadence = updates_over(ClusteringSchedule(refine=True, update_interval=140), 3, 40)
    assert [step for step, _, r in epoch_cadence if r] == [40, 80, 120]  # every epoch end
    # MNIST-full's 274 batches: 140 steps apart, not 140 then 134
    s = ClusteringSchedule(refine=True, update_interval=140, cadence="global")
    full = updates_over(s, 2, 274)
    assert [step for step, _, r in full if r] == [140, 280, 420]


def test_a_scored_only_update_neither_tests_convergence_nor_becomes_the_reference():
    s = ClusteringSchedule(refine=True, update_interval=140, cadence="global", tol=0.1)
    labels = np.arange(20) % 2
    s.record(Update("epoch", False, True, "pretrain"), labels)
    same = Update("epoch", False, False, "refine", refreshes=False)
    changed, stop = s.record(same, labels)  # 0 % changed, but only scored: no convergence
    assert changed == 0.0 and not stop
    moved = churn(labels, 6)  # 30 % moved since the start
    changed, stop = s.record(same, moved)
    assert changed == pytest.approx(0.3) and not stop
    changed, stop = s.record(Update("step", False, False, "refine"), labels)
    assert changed == 0.0 and stop  # compared with the start's labels, not the scored ones


def test_global_cadence_honours_the_cap_at_a_scored_epoch_end():
    s = ClusteringSchedule(refine=True, update_interval=140, cadence="global", max_iterations=50)
    s.record(Update("epoch", False, True, "pretrain"), np.arange(10) % 2)
    for b in range(60):
        s.after_step(b, 60, refining=True)
    u = s.at_epoch_end(0, 10, stopping=False, refining=True)
    assert not u.refreshes
    _, stop = s.record(u, np.arange(10) % 2)
    assert stop and s.stop_reason.startswith("max_iterations: 60")


def test_changed_compares_like_with_like_and_convergence():
    s = ClusteringSchedule(refine=True, tol=0.1)
    a = np.array([0, 0, 1, 1, 2, 2, 2, 2, 2, 2])
    start = Update("epoch", True, True, "pretrain")
    codes = Update("step", False, False, "refine")
    changed, stop = s.record(start, a)
    assert math.isnan(changed) and not stop
    changed, stop = s.record(codes, a[::-1])  # first code-space update: nothing to compare
    assert math.isnan(changed) and not stop
    relabelled = np.array([1, 1, 0, 0, 2, 2, 2, 2, 0, 2])[::-1]  # ids permuted + one moved
    changed, stop = s.record(codes, relabelled)
    assert changed == pytest.approx(0.1) and not stop  # 10 % is not < tol
    changed, stop = s.record(codes, relabelled)
    assert changed == 0.0 and stop and s.stop_reason.startswith("converged")


def test_max_iterations_stops_refinement():
    s = ClusteringSchedule(refine=True, update_interval=2, max_iterations=4, tol=0.0)
    u = Update("step", False, False, "refine")
    labels = np.arange(10) % 2
    s.record(u, labels)
    for b in range(4):
        s.after_step(b, 100, refining=True)
    flipped = labels.copy()
    flipped[:3] = 1 - flipped[:3]
    changed, stop = s.record(u, flipped)
    assert stop and s.stop_reason.startswith("max_iterations: 4")
    # a stop mid-epoch: the epoch end clusters the same codes again (0 % changed); the
    # reason that stopped it stands
    changed, stop = s.record(Update("epoch", False, False, "refine"), flipped)
    assert changed == 0.0 and stop and s.stop_reason.startswith("max_iterations: 4")


def churn(labels: np.ndarray, n_moved: int) -> np.ndarray:
    """The labels with the first `n_moved` of them moved to another cluster."""
    out = labels.copy()
    out[:n_moved] = (out[:n_moved] + 1) % 2
    return out


def test_patience_stops_when_the_label_change_stops_setting_new_lows():
    u = Update("epoch", False, False, "refine")
    labels = np.tile([0, 1], 100)
    moved = [20, 10, 4, 6, 4, 8]  # lowest (2 %) at the third comparison, then none lower
    s = ClusteringSchedule(refine=True, tol=0.005, patience=3)
    stops = []
    for n in [0, *moved]:
        labels = churn(labels, n)
        stops.append(s.record(u, labels)[1])
    assert stops == [False, False, False, False, False, False, True]
    assert s.stop_reason.startswith("patience: no new lowest label change in 3 updates")
    assert "lowest 2.00%" in s.stop_reason and "last 4.00%" in s.stop_reason


def test_patience_zero_never_stops_and_tol_still_does():
    u = Update("epoch", False, False, "refine")
    labels = np.tile([0, 1], 100)
    s = ClusteringSchedule(refine=True, tol=0.005, patience=0)
    for n in [0, 4, 8, 8, 8, 8, 8, 8]:
        labels = churn(labels, n)
        assert not s.record(u, labels)[1]
    assert s.record(u, labels)[1] and s.stop_reason.startswith("converged")


def test_patience_counts_survive_a_checkpoint():
    u = Update("epoch", False, False, "refine")
    labels = np.tile([0, 1], 100)
    s = ClusteringSchedule(refine=True, patience=2)
    for n in [0, 4, 8]:
        labels = churn(labels, n)
        s.record(u, labels)
    t = ClusteringSchedule(refine=True, patience=2)
    t.load_state_dict(s.state_dict())
    assert (t.lowest_changed, t.since_lowest) == (0.02, 1)
    assert t.record(u, churn(labels, 6))[1]  # the second update without a new low


def test_a_restored_stop_holds_unless_its_cap_was_raised():
    s = ClusteringSchedule(refine=True, max_iterations=100)
    assert not s.restored_stop()  # max_epochs: Lightning's own business
    s.refine_steps, s.stop_reason = 100, "max_iterations: 100 refinement steps"
    assert s.restored_stop()
    s.max_iterations = 200  # resumed with a higher cap: refinement goes on
    assert not s.restored_stop()
    s.stop_reason = "converged: 0.1% of labels changed (< tol 0.5%)"
    assert s.restored_stop()


def test_a_restored_convergence_or_patience_stop_yields_to_stricter_settings():
    """Continuing a converged checkpoint with a lower refine.tol (or more patience) refined
    no further, and its stop_reason quoted the old tol under the new config."""
    s = ClusteringSchedule(refine=True, tol=0.05)
    assert s._should_stop(0.03) and s.stop_reason.startswith("converged")
    stricter, same = ClusteringSchedule(refine=True, tol=0.001), ClusteringSchedule(tol=0.05)
    for t in (stricter, same):
        t.load_state_dict(s.state_dict())
    assert not stricter.restored_stop() and same.restored_stop()
    old = s.state_dict()
    del old["stop_changed"]  # a checkpoint from before it was kept: its stop stands
    stricter.load_state_dict(old)
    assert stricter.restored_stop()

    p = ClusteringSchedule(refine=True, patience=2)
    p.stop_reason, p.since_lowest = "patience: no new lowest label change in 2 updates", 2
    for patience, holds in ((2, True), (5, False), (0, False)):
        q = ClusteringSchedule(refine=True, patience=patience)
        q.load_state_dict(p.state_dict())
        assert q.restored_stop() is holds, patience


def test_a_stop_keeps_its_reason_and_change_through_later_updates():
    """A run converging at the update where the step cap is reached says "converged"; redone
    from its checkpoint (results not yet written) it said "max_iterations", and the epoch-end
    update after a mid-epoch stop recorded 0 % changed, not the change that met tol."""
    kw = dict(refine=True, pretrain_epochs=0, update_interval=2, tol=0.1, max_iterations=4)
    s = ClusteringSchedule(**kw)
    a, b = np.array([0, 0, 1, 1] * 5), np.array([0, 1, 0, 1] * 5)
    s.record(s.at_train_start(0, False), a)
    for step, labels in ((0, None), (1, b), (2, None), (3, b)):
        update = s.after_step(step, 100, True)
        if update is not None:
            changed, stop = s.record(update, labels)
    assert stop and changed == 0.0 and s.stop_reason.startswith("converged")
    # the epoch end after it reclusters the same codes: 0 % against the reference
    assert s.record(Update("epoch", False, False, "refine"), b) == (0.0, True)
    r = ClusteringSchedule(**kw)
    r.load_state_dict(s.state_dict())
    assert r.restored_stop()
    assert r.record(Update("epoch", False, False, "refine", refreshes=False), b)[1]
    assert r.stop_reason.startswith("converged")
    # a stop mid-epoch: the epoch end reports the change that met tol
    m = ClusteringSchedule(refine=True, pretrain_epochs=0, update_interval=2, tol=0.3)
    m.record(m.at_train_start(0, False), a)
    m.after_step(0, 100, True)
    c = a.copy()
    c[:2] = 1  # 2 of 20 labels move
    changed, stop = m.record(m.after_step(1, 100, True), c)
    assert stop and changed == pytest.approx(0.1)
    assert m.record(Update("epoch", False, False, "refine"), c) == (changed, True)


def test_schedule_state_round_trip():
    s = ClusteringSchedule(refine=True)
    s.record(Update("epoch", False, True, "pretrain"), np.array([0, 1, 1]))
    s.refine_steps, s.stop_reason = 7, "converged: x"
    t = ClusteringSchedule(refine=True)
    t.load_state_dict(s.state_dict())
    assert t.refine_steps == 7 and t.stop_reason == "converged: x"
    np.testing.assert_array_equal(t.previous["codes"], [0, 1, 1])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tol": 1.5},
        {"update_interval": -1},
        {"cluster_every_n_epochs": 0},
        {"patience": -1},
        {"cadence": "epochs"},
    ],
)
def test_schedule_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ClusteringSchedule(**kwargs)


# --- the callback with a fake trainer ---------------------------------------------------
class FakeDataModule:
    def __init__(self, n=120, k=3):
        z, y = blobs(n_per=n // k, k=k, d=4, spread=0.2, seed=5)
        self.labels = y
        # images whose first pixels carry the blob coordinates: the encoder sees the clusters
        imgs = np.zeros((len(z), 1, 28, 28), dtype=np.uint8)
        imgs[:, 0, 0, :4] = np.clip(128 + 12 * z, 0, 255)
        self.images = torch.from_numpy(imgs)
        self.train_images = self.images


def fake_trainer(dm, epoch=0, max_epochs=3, rank_zero=True, broadcast=None):
    return SimpleNamespace(
        datamodule=dm,
        current_epoch=epoch,
        max_epochs=max_epochs,
        should_stop=False,
        is_global_zero=rank_zero,
        world_size=1,
        global_step=0,
        num_training_batches=10,
        sanity_checking=False,
        strategy=SimpleNamespace(broadcast=broadcast or (lambda obj, src=0: obj)),
    )


def make_callback(**schedule):
    return ClusteringCallback(
        KMeans(n_init=2, seed=0), k=3, schedule=ClusteringSchedule(**schedule)
    )


def module_with_loss():
    module = DeepClusterModule(CAE())
    module.epoch_loss.update(torch.tensor(0.5), weight=4)
    module.log_dict = lambda *a, **k: None  # no Trainer to log to
    return module


def test_callback_pretrain_epochs_zero_sets_targets_at_train_start():
    dm, module = FakeDataModule(), module_with_loss()
    callback = make_callback(refine=True, pretrain_epochs=0)
    callback.on_train_start(fake_trainer(dm), module)
    assert module.refining and module.targets.shape == (120, 10)
    assert module.rotation.shape == (10, 10)


def test_callback_skips_epochs_by_cadence_and_records_the_loss():
    dm = FakeDataModule()
    callback = make_callback(cluster_every_n_epochs=2)
    for epoch in range(3):
        callback.on_train_epoch_end(fake_trainer(dm, epoch=epoch), module_with_loss())
    # every entry has the keys (DESIGN.md §3); a skipped epoch leaves them null
    assert all({"epoch", "phase", "loss", "acc", "nmi"} <= h.keys() for h in callback.history)
    assert [h["acc"] is not None for h in callback.history] == [False, True, True]
    assert callback.history[0]["nmi"] is None and "k" not in callback.history[0]
    assert all(h["loss"] == pytest.approx(0.5) for h in callback.history)
    assert callback.history[1]["k"] == 3 and "silhouette" in callback.history[1]


def test_a_history_from_an_older_checkpoint_gains_the_acc_and_nmi_keys():
    callback = make_callback()
    old = [{"epoch": 0, "phase": "pretrain", "loss": 0.5}, {"epoch": 1, "loss": 0.4, "acc": 0.7}]
    callback.load_state_dict({"history": old})
    assert callback.history[0]["acc"] is None and callback.history[0]["nmi"] is None
    assert callback.history[1]["acc"] == 0.7 and callback.history[1]["loss"] == 0.4


class CountingKMeans(KMeans):
    """k-means that records the restarts of each call: one entry per clustering."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def __call__(self, z, k):
        self.calls.append(self.n_init)
        return super().__call__(z, k)


def test_callback_step_updates_during_refinement():
    dm, module = FakeDataModule(), module_with_loss()
    clusterer = CountingKMeans(n_init=2, seed=0)
    schedule = ClusteringSchedule(refine=True, pretrain_epochs=0, update_interval=2)
    callback = ClusteringCallback(clusterer, k=3, schedule=schedule)
    trainer = fake_trainer(dm)
    callback.on_train_start(trainer, module)
    assert len(clusterer.calls) == 1  # the update that starts refinement
    first = module.targets
    for b in range(4):
        callback.on_train_batch_end(trainer, module, None, None, b)
    assert callback.schedule.refine_steps == 4
    assert len(clusterer.calls) == 3  # and one every 2 steps: after batches 1 and 3
    assert module.targets is not first  # the step updates set new targets
    assert len(callback.schedule.previous["codes"]) == 120


def test_callback_state_dict_round_trip():
    dm = FakeDataModule()
    callback = make_callback(refine=True, pretrain_epochs=1)
    callback.on_train_epoch_end(fake_trainer(dm, epoch=0), module_with_loss())
    callback.schedule.stop_reason = "converged: 0.40% of labels changed"  # not the default
    state = callback.state_dict()
    other = make_callback(refine=True, pretrain_epochs=1)
    other.load_state_dict(state)
    assert other.history == callback.history
    np.testing.assert_array_equal(other.labels, callback.labels)
    assert other.schedule.stop_reason == "converged: 0.40% of labels changed"


@pytest.mark.parametrize("pretrain_epochs, restarts", [(1, 7), (3, 2)])
def test_a_redone_last_update_restarts_as_the_update_it_redoes(pretrain_epochs, restarts):
    """A run whose last epoch started refinement (trainer.max_epochs = pretrain_epochs) and died
    before its results: the redo clustered with the clusterer's own restarts where the update
    had first_n_init, so metrics.json (from the history) and predictions.csv (from the redo)
    could describe two partitions. A monitoring update is redone with the clusterer's own."""
    dm, module = FakeDataModule(), module_with_loss()
    counting = CountingKMeans(n_init=2, seed=0)
    callback = ClusteringCallback(
        counting,
        k=3,
        schedule=ClusteringSchedule(refine=True, pretrain_epochs=pretrain_epochs),
        first_n_init=7,
    )
    callback.on_train_epoch_end(fake_trainer(dm, epoch=0, max_epochs=1), module)
    callback.redo_last_update(fake_trainer(dm, epoch=0, max_epochs=1), module)
    assert counting.calls == [restarts, restarts]
    assert callback.clusterer.n_init == 2  # the redo leaves the clusterer as configured


def test_callback_reads_the_device_resident_images():
    dm = FakeDataModule()
    dm.images = None  # only the training copy exists: the embedding must read it
    callback = make_callback()
    callback.on_train_epoch_end(fake_trainer(dm), module_with_loss())
    assert callback.last_codes.shape == (120, 10)


def test_a_clustering_error_on_rank_zero_reaches_every_rank():
    """Rank 0 fails; what it broadcasts makes the other rank raise too, not wait."""
    dm = FakeDataModule()
    sent = {}

    def broadcast(obj, src=0):
        if obj is not None:
            sent["obj"] = obj
        return sent["obj"]

    class Broken:
        def __call__(self, z, k):
            raise ValueError("codes contain NaN")

    rank0 = ClusteringCallback(Broken(), k=3, schedule=ClusteringSchedule())
    with pytest.raises(ClusteringError, match="codes contain NaN"):
        rank0.on_train_epoch_end(fake_trainer(dm, broadcast=broadcast), module_with_loss())
    rank1 = ClusteringCallback(Broken(), k=3, schedule=ClusteringSchedule())
    with pytest.raises(ClusteringError, match="codes contain NaN"):
        rank1.on_train_epoch_end(
            fake_trainer(dm, rank_zero=False, broadcast=broadcast), module_with_loss()
        )


def test_a_bug_in_clustering_keeps_its_traceback_in_one_process():
    """Not the data's fault (an IndexError, say): raised as it is, not reduced to a message."""

    class Buggy:
        def __call__(self, z, k):
            return [][0]

    callback = ClusteringCallback(Buggy(), k=3, schedule=ClusteringSchedule())
    with pytest.raises(IndexError):
        callback.on_train_epoch_end(fake_trainer(FakeDataModule()), module_with_loss())


# --- learning-rate schedules (issue 14) -------------------------------------------------
def test_one_cycle_warms_up_peaks_decays_and_hands_refinement_the_base_rate():
    from deepcluster.build import one_cycle

    f = one_cycle(lr=1e-3, peak_lr=1e-2, warmup_fraction=0.1, steps=100)
    assert f(0) == pytest.approx(1.0) and f(10) == pytest.approx(10.0)  # warm-up to the peak
    assert f(5) == pytest.approx(5.5)
    assert f(99) < 0.05  # cosine down to about lr/100
    assert f(100) == 1.0 and f(5000) == 1.0  # refinement: optim.lr


@pytest.mark.parametrize("max_epochs, low_at", [(5, 5), (30, 20)])
def test_the_cycle_ends_where_pretraining_does(compose, max_epochs, low_at):
    """schedule=fast with refinement after 20 epochs: a run stopped at 5 ends its cycle at 5,
    at the low rate (it ended near the peak, 9.3e-3); a full one at 20."""
    from deepcluster.build import build_parts

    cfg = compose(
        "schedule=fast", "refine=dekm", "pretrain_epochs=20", f"trainer.max_epochs={max_epochs}"
    )
    factor = build_parts(cfg).module.lr_schedule(10)  # 10 steps an epoch
    assert factor(10 * low_at - 1) < 0.05 and factor(10 * low_at) == 1.0


def test_refinement_from_the_start_runs_at_the_base_rate(compose):
    """pretrain_epochs=0 with schedule=fast: `max(1, …)` made a one-epoch cycle, so the
    refinement's first epoch ran a warm-up to 10× optim.lr and a cosine down."""
    from deepcluster.build import build_parts

    cfg = compose("schedule=fast", "refine=dekm", "pretrain_epochs=0", "trainer.max_epochs=3")
    factor = build_parts(cfg).module.lr_schedule(10)
    assert {factor(step) for step in range(30)} == {1.0}


def test_the_cycle_counts_the_runs_steps_not_the_schedulers(compose):
    """A checkpoint without a scheduler state (a constant-rate pretraining continued with
    schedule=fast) restarted the cycle at refinement's first step: 10× optim.lr there."""
    from deepcluster.build import build_parts

    cfg = compose("schedule=fast", "refine=dekm", "pretrain_epochs=2", "trainer.max_epochs=4")
    module = build_parts(cfg).module

    class Trainer:  # what configure_optimizers reads of Lightning's
        max_epochs, estimated_stepping_batches, global_step = 4, 40, 25  # inside refinement

    module.trainer = Trainer()
    scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(cfg.optim.lr)  # not the cycle's start
    Trainer.global_step = 5  # inside pretraining: the cycle, at its step 5 of 20
    scheduler.step()
    assert scheduler.get_last_lr()[0] > 5 * cfg.optim.lr


def test_schedule_fast_composes_and_trains(compose, tmp_path):
    from deepcluster.run import run

    cfg = compose(
        "schedule=fast",
        "dataset=synthetic",
        "dataset.n=64",
        "refine=none",
        "trainer.max_epochs=2",
        "logger=none",
        "plots=false",
        "baseline=false",
        "trainer.enable_progress_bar=false",
        f"output_dir={tmp_path}",
    )
    assert cfg.optim.schedule == "one_cycle" and cfg.trainer.precision == "auto"
    metrics = run(cfg)
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]
    from deepcluster.machine import cpu_has_native_bf16

    ran = "bf16-mixed" if cpu_has_native_bf16() else "32-true"
    assert f"precision: {ran}" in (tmp_path / "config.yaml").read_text()  # not "auto"


@pytest.mark.parametrize(
    "asked, on_cpu, native, expected, logged",
    [
        ("auto", True, True, "bf16-mixed", "AMX or AVX-512 BF16"),
        ("auto", True, False, "32-true", "no AMX or AVX-512 BF16"),
        ("auto", False, False, "32-true", "the GPU"),
        ("bf16-mixed", True, False, "bf16-mixed", "16× slower"),  # kept, with a warning
        ("bf16-mixed", True, True, "bf16-mixed", None),
        ("bf16-mixed", False, False, "bf16-mixed", None),
        ("32-true", True, False, "32-true", None),
    ],
)
def test_precision_auto_picks_bf16_only_where_it_is_faster(
    monkeypatch, asked, on_cpu, native, expected, logged
):
    from deepcluster import machine
    from deepcluster.build import choose_precision

    monkeypatch.setattr(machine, "cpu_has_native_bf16", lambda: native)
    precision, why = choose_precision(asked, on_cpu)
    assert precision == expected
    assert (why is None) if logged is None else (logged in why)


def test_a_slow_bf16_is_a_warning_and_auto_is_written_as_what_ran(
    compose, tmp_path, caplog, monkeypatch
):
    """On a CPU without bfloat16 units (monkeypatched, so this holds on any test machine)
    bf16-mixed as asked trains with a warning; auto trains in float32 and says so."""
    import logging

    from deepcluster import machine
    from deepcluster.build import build_trainer

    caplog.set_level(logging.INFO, logger="deepcluster")
    monkeypatch.setattr(machine, "cpu_has_native_bf16", lambda: False)
    slow = compose("trainer.precision=bf16-mixed")
    assert build_trainer(slow, [], tmp_path).precision == "bf16-mixed"
    assert any(r.levelname == "WARNING" and "16× slower" in r.message for r in caplog.records)
    auto = compose("schedule=fast")
    assert build_trainer(auto, [], tmp_path).precision == "32-true"
    assert auto.trainer.precision == "32-true"  # the config saved with the run says so


@pytest.mark.parametrize("target_scale, expected", [("free", 3.0), ("fixed", 1.0)])
def test_target_scale_decides_whether_the_targets_follow_the_codes_scale(target_scale, expected):
    """Codes grown 3× since refinement started: free targets grow with them (the reference),
    fixed ones keep the starting scale (the feedback of augmented refinement, cut). The scale
    survives a checkpoint."""
    from deepcluster.clustering.rotation import code_rms

    z, _ = blobs(n_per=40, k=3, d=4, seed=1)
    callback = ClusteringCallback(
        KMeans(n_init=3), k=3, schedule=ClusteringSchedule(refine=True), target_scale=target_scale
    )
    start = callback._cluster_rank0(z, Update("epoch", False, True, "pretrain"), refining=False)
    resumed = ClusteringCallback(
        KMeans(n_init=3), k=3, schedule=ClusteringSchedule(refine=True), target_scale=target_scale
    )
    resumed.load_state_dict(callback.state_dict())
    later = resumed._cluster_rank0(3 * z, Update("step", False, False, "refine"), refining=True)
    ratio = code_rms(later["targets"]["targets"]) / code_rms(start["targets"]["targets"])
    assert ratio == pytest.approx(expected, rel=1e-6)


def test_a_bad_target_scale_names_the_key():
    with pytest.raises(ValueError, match="refine.target_scale='big'"):
        ClusteringCallback(KMeans(), k=3, schedule=ClusteringSchedule(), target_scale="big")


def run_epoch(s, num_batches, labels_at):
    """Drive one refinement epoch of `num_batches` steps; labels_at(where) → labels.
    Returns [(where, changed, stop)] of its updates."""
    out = []
    for b in range(num_batches):
        u = s.after_step(b, num_batches, refining=True)
        if u is not None:
            out.append((u.where, *s.record(u, labels_at(u.where))))
    u = s.at_epoch_end(0, 100, stopping=False, refining=True)
    out.append((u.where, *s.record(u, labels_at(u.where))))
    return out


def test_an_epochs_short_tail_refreshes_but_does_not_test_convergence():
    """41 batches, an update every 40 steps: the epoch end comes 1 step after the step
    update. A label change over 1 step says nothing of convergence (it is small either way)."""
    labels = np.tile([0, 1], 100)
    s = ClusteringSchedule(refine=True, update_interval=40, tol=0.05, patience=1)
    s.record(Update("epoch", False, True, "pretrain"), labels)  # refinement starts
    state = {"labels": labels}

    def moving(where):  # 20 % over a 40-step window, 1 % over the 1-step tail
        state["labels"] = churn(state["labels"], 40 if where == "step" else 2)
        return state["labels"]

    first = run_epoch(s, 41, moving)
    assert [(w, round(c, 2), stop) for w, c, stop in first] == [
        ("step", 0.2, False),
        ("epoch", 0.01, False),  # under tol, and a new low for patience: neither counts
    ]
    assert s.lowest_changed == pytest.approx(0.2)  # the tail set no low
    # the next full window is compared with the tail's labels, and is tested
    second = run_epoch(s, 41, lambda where: state["labels"])
    assert second[0] == ("step", 0.0, True) and s.stop_reason.startswith("converged")


def test_an_epoch_shorter_than_the_interval_is_tested_at_its_end():
    labels = np.tile([0, 1], 100)
    s = ClusteringSchedule(refine=True, update_interval=40, tol=0.05)
    s.record(Update("epoch", False, True, "pretrain"), labels)
    assert run_epoch(s, 17, lambda where: churn(labels, 2)) == [("epoch", 0.01, True)]


def test_the_refresh_window_survives_a_checkpoint():
    s = ClusteringSchedule(refine=True, update_interval=40)
    s.record(Update("epoch", False, True, "pretrain"), np.arange(10) % 2)
    for b in range(40):
        s.after_step(b, 41, refining=True)
    s.record(Update("step", False, False, "refine"), np.arange(10) % 2)
    restored = ClusteringSchedule(refine=True, update_interval=40)
    restored.load_state_dict(s.state_dict())
    assert restored.last_refresh_step == s.last_refresh_step == 40
    old = s.state_dict()
    del old["last_refresh_step"]  # a checkpoint from before: every window is tested
    restored.load_state_dict(old)
    assert restored.last_refresh_step is None
