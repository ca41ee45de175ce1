"""refine=dec: DEC's KL refinement (and DEC-DA with augment): the maths, the module's step,
a run that resumes inside refinement, and DDP ranks training the same centres."""

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from deepcluster.clustering.dec import assign_all, kl_loss, soft_assign, target_distribution
from deepcluster.errors import ConfigError
from deepcluster.models import CAE, DeepClusterModule
from tests.conftest import ROOT, run_cli

TINY_DEC = [
    "dataset=synthetic",
    "dataset.n=96",
    "refine=dec",
    "pretrain_epochs=1",
    "refine.update_interval=2",
    "refine.tol=0",  # run every epoch asked for
    "logger=none",
    "plots=false",
    "baseline=false",
    "trainer.enable_progress_bar=false",
]


@pytest.mark.parametrize("method", ["dekm", "dec"])
def test_refine_none_does_not_go_on_refining_a_checkpoint_taken_inside_refinement(
    compose, tmp_path, method
):
    """refine=none continued a refining checkpoint's refinement, and its metrics.json said
    refine: false. It is refused, naming what to give; clustering it only still works."""
    from deepcluster.run import run

    tiny = [o for o in TINY_DEC if o != "refine=dec"]
    run(compose(*tiny, f"refine={method}", "trainer.max_epochs=3", f"output_dir={tmp_path}/a"))
    ckpt = f"ckpt_path={tmp_path}/a/checkpoints/last.ckpt"
    none = [*tiny, "refine=none", ckpt]
    with pytest.raises(ConfigError, match=rf"refine=none, but .* inside refine.method={method}"):
        run(compose(*none, "trainer.max_epochs=5", f"output_dir={tmp_path}/b"))
    only = run(compose(*none, "trainer.max_epochs=0", f"output_dir={tmp_path}/c"))
    assert only["history"][-1]["phase"] == "cluster_only" and only["acc"] is not None


def test_soft_assignments_are_distributions_led_by_the_nearest_centre():
    torch.manual_seed(0)
    z, centers = torch.randn(200, 5), torch.randn(4, 5)
    q = soft_assign(z, centers, alpha=1.0)
    assert q.shape == (200, 4) and torch.allclose(q.sum(1), torch.ones(200))
    assert torch.equal(q.argmax(1), torch.cdist(z, centers).argmin(1))
    # DEC's kernel, written out: (1 + d²/α)^-(α+1)/2, normalised per row
    d2 = torch.cdist(z, centers).square()
    kernel = (1 + d2 / 3.0) ** (-(3.0 + 1) / 2)
    assert torch.allclose(soft_assign(z, centers, 3.0), kernel / kernel.sum(1, keepdim=True))


def test_target_sharpens_and_kl_vanishes_only_at_the_target():
    torch.manual_seed(0)
    q = soft_assign(torch.randn(300, 3), torch.randn(5, 3))
    p = target_distribution(q)
    assert torch.allclose(p.sum(1), torch.ones(300))
    assert (p.max(1).values >= q.max(1).values - 1e-6).float().mean() > 0.9  # more confident
    assert float(kl_loss(p, p)) == pytest.approx(0.0, abs=1e-6)
    assert float(kl_loss(p, q)) > 0


def test_the_update_pass_gives_the_batch_formula_without_an_n_by_k_by_d_array():
    torch.manual_seed(0)
    z, centers = 50 * torch.randn(500, 8), 50 * torch.randn(6, 8)  # far-apart codes
    q, p = assign_all(z, centers, alpha=1.0)
    assert torch.allclose(q, soft_assign(z, centers), atol=1e-6)
    assert torch.allclose(p, target_distribution(soft_assign(z, centers)), atol=1e-6)
    assert q.dtype == p.dtype == torch.float32


def test_a_code_on_its_centre_has_a_finite_gradient():
    centers = torch.tensor([[0.0, 0.0], [3.0, 0.0]], requires_grad=True)
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0]], requires_grad=True)
    kl_loss(torch.tensor([[0.9, 0.1], [0.5, 0.5]]), soft_assign(z, centers)).backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(centers.grad).all()


def test_dec_step_trains_encoder_and_centres_not_the_decoder():
    torch.manual_seed(0)
    module = DeepClusterModule(CAE(), refine_method="dec")
    x = torch.rand(8, 1, 28, 28)
    module.set_centers(torch.randn(3, 10))
    q = soft_assign(module.model.encode(x).detach(), module.centers.detach())
    module.set_targets(torch.empty(0, 0), target_distribution(q))
    loss = module.training_step((x, torch.arange(8)), 0)
    loss.backward()
    module.on_after_backward()
    assert module.refining and loss.item() > 0
    assert module.centers.grad is not None and module.centers.grad.abs().sum() > 0
    assert all(p.grad is None for p in module.model.decoder.parameters())
    assert all(p.grad is not None for p in module.model.encoder.parameters())


def test_bad_dec_settings_name_the_key(compose):
    from deepcluster.config import validate

    with pytest.raises(ConfigError, match="refine.method='kmeans' must be dekm"):
        validate(compose("refine=dec", "refine.method=kmeans"))
    with pytest.raises(ConfigError, match=r"refine.alpha=0.0 must be a number > 0"):
        validate(compose("refine=dec", "refine.alpha=0.0"))
    with pytest.raises(ConfigError, match=r"refine.cadence='steps' must be epoch .* or global"):
        validate(compose("refine=dec", "refine.cadence=steps"))


def test_dec_run_resumed_inside_refinement_equals_the_uninterrupted_run(compose, tmp_path):
    """The centres are a parameter created mid-run: a checkpoint taken inside refinement
    must bring them back (weights and Adam's state) before training continues."""
    from deepcluster.run import run

    whole, part = tmp_path / "whole", tmp_path / "part"
    full = run(compose(*TINY_DEC, "trainer.max_epochs=4", f"output_dir={whole}"))
    run(compose(*TINY_DEC, "trainer.max_epochs=3", f"output_dir={part}"))
    ckpt = torch.load(part / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["state_dict"]["centers"].shape == (4, 10)
    assert len(ckpt["optimizer_states"][0]["param_groups"]) == 2  # the centres' own group
    resumed = run(
        compose(
            *TINY_DEC,
            "trainer.max_epochs=4",
            f"output_dir={part}",
            f"ckpt_path={part}/checkpoints/last.ckpt",
        )
    )
    assert resumed["refine_method"] == "dec"
    # DEC's updates score the sum of squares around its centres, not the clusterer's objective
    assert resumed["objective_name"] == full["objective_name"] == "within_ss"
    phases = [h["phase"] for h in resumed["history"]]
    assert phases == ["pretrain", "refine", "refine", "refine"]
    assert resumed["acc"] == pytest.approx(full["acc"])
    a = pd.read_csv(whole / "predictions.csv")["cluster"]
    b = pd.read_csv(part / "predictions.csv")["cluster"]
    assert (a == b).all()
    # the centres and their Adam moments went on as if never stopped
    w = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)
    r = torch.load(part / "checkpoints" / "last.ckpt", weights_only=True)
    assert torch.allclose(w["state_dict"]["centers"], r["state_dict"]["centers"], atol=1e-6)
    w_opt, r_opt = w["optimizer_states"][0], r["optimizer_states"][0]
    (centres_id,) = w_opt["param_groups"][1]["params"]
    assert torch.allclose(
        w_opt["state"][centres_id]["exp_avg_sq"], r_opt["state"][centres_id]["exp_avg_sq"]
    )
    assert w_opt["state"][centres_id]["step"] == r_opt["state"][centres_id]["step"]
    # clustering it once (trainer.max_epochs=0) works whatever refine says: nothing trains
    read = run(
        compose(
            *TINY_DEC,
            "refine=dekm",
            "trainer.max_epochs=0",
            f"output_dir={tmp_path / 'read'}",
            f"ckpt_path={part}/checkpoints/last.ckpt",
        )
    )
    assert read["stop_reason"].startswith("cluster_only")
    from deepcluster.predict import Predictor  # and its model loads to assign new images

    predictor = Predictor(tmp_path / "read")
    images = torch.randint(0, 256, (5, predictor.channels, predictor.image_size, 28))
    clusters, codes = predictor(images[..., : predictor.image_size].to(torch.uint8))
    assert clusters.shape == (5,) and codes.shape == (5, 10)
    # nor can another k go on with DEC's 4 centres (it used to log "continuing with k=3"
    # and go on with 4 clusters)
    with pytest.raises(ConfigError, match="k=3, but the checkpoint is inside DEC's"):
        run(
            compose(
                *TINY_DEC,
                "k=3",
                "trainer.max_epochs=5",
                f"output_dir={tmp_path / 'k3'}",
                f"ckpt_path={part}/checkpoints/last.ckpt",
            )
        )
    assert list((tmp_path / "k3").iterdir()) == []  # refused before anything was written
    # the other method cannot go on with DEC's targets: it says so, and how to go on
    with pytest.raises(ConfigError, match="resume with refine.method=dec"):
        run(
            compose(
                *TINY_DEC,
                "refine.method=dekm",
                "trainer.max_epochs=5",
                f"output_dir={tmp_path / 'other'}",
                f"ckpt_path={part}/checkpoints/last.ckpt",
            )
        )


@pytest.mark.parametrize("in_ddp", [False, True])
def test_the_centres_gradient_is_averaged_over_ranks_once(monkeypatch, in_ddp):
    """Created mid-fit, the centres are outside DDP: on_after_backward averages their
    gradient; restored from a checkpoint (so inside DDP), DDP already has."""
    module = DeepClusterModule(CAE(), refine_method="dec")
    module.set_centers(torch.zeros(3, 10))
    module.centers.grad = torch.full((3, 10), 2.0)
    module._trainer = SimpleNamespace(world_size=2)
    module._centers_in_ddp = in_ddp
    # the other rank's gradient is 4: the all-reduce sums 2 + 4
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: t.add_(4.0))
    module.on_after_backward()
    assert torch.equal(module.centers.grad, torch.full((3, 10), 2.0 if in_ddp else 3.0))


def test_ddp_ranks_train_the_same_dec_centres(tmp_path):
    """The centres join after DDP wrapped the model, so DDP does not average their gradient;
    without our all-reduce each rank would train its own (the rank check hashes them)."""
    proc = run_cli(
        *TINY_DEC,
        "dataset.n=256",
        "trainer=ddp",
        "trainer.max_epochs=3",
        "refine.update_interval=1",
        f"hydra.run.dir={tmp_path}",
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["ddp_rank_agreement_checks"] > 4


def test_dec_under_a_learning_rate_schedule(compose, tmp_path):
    """The centres join the optimizer mid-fit: the schedule must cover their group too (it
    failed with zip() "argument 2 is shorter" at the first refinement step), at the encoder's
    rate, and a resume inside refinement goes on the same."""
    from deepcluster.run import run

    args = [*TINY_DEC, "optim.schedule=one_cycle", "optim.peak_lr=0.01"]
    whole = run(compose(*args, "trainer.max_epochs=3", f"output_dir={tmp_path / 'whole'}"))
    assert [h["phase"] for h in whole["history"]] == ["pretrain", "refine", "refine"]
    ckpt = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=True)
    groups = ckpt["optimizer_states"][0]["param_groups"]
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(groups[0]["lr"])
    assert len(ckpt["lr_schedulers"][0]["base_lrs"]) == 2
    part = tmp_path / "part"
    run(compose(*args, "trainer.max_epochs=2", f"output_dir={part}"))
    resumed = run(
        compose(
            *args,
            "trainer.max_epochs=3",
            f"output_dir={part}",
            f"ckpt_path={part}/checkpoints/last.ckpt",
        )
    )
    assert resumed["acc"] == pytest.approx(whole["acc"])


def test_a_raised_step_cap_trains_on_and_says_why_it_stopped(compose, tmp_path):
    """A run stopped by refine.max_iterations, resumed with the cap lifted, trains on: its
    metrics must not keep the old "max_iterations" reason."""
    from deepcluster.run import run

    capped = run(
        compose(
            *TINY_DEC, "refine.max_iterations=2", "trainer.max_epochs=4", f"output_dir={tmp_path}"
        )
    )
    assert capped["stop_reason"].startswith("max_iterations")
    (tmp_path / "metrics.json").unlink()  # as if its process had ended before the results
    again = run(
        compose(
            *TINY_DEC,
            "refine.max_iterations=0",
            "trainer.max_epochs=4",
            f"output_dir={tmp_path}",
            f"ckpt_path={tmp_path}/checkpoints/last.ckpt",
        )
    )
    assert again["stop_reason"] == "max_epochs" and again["epochs"] == 4
