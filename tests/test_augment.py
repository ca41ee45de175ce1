"""augment=affine: shapes, range, seeding, and that clustering never sees it."""

import pytest
import torch

from deepcluster.data.augment import Affine
from deepcluster.models import CAE, DeepClusterModule
from deepcluster.run import run


def batch():
    torch.manual_seed(0)
    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 1.0  # a bar: any shift or rotation moves pixels
    return x


def test_keeps_shape_and_range_and_moves_pixels():
    x = batch()
    y = Affine(max_shift=0.1, max_rotation=10, scale=(0.9, 1.1))(x, step=3)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(y, x)


def test_same_seed_and_step_give_the_same_augmentation():
    x = batch()
    a, b = Affine(seed=1)(x, step=5), Affine(seed=1)(x, step=5)
    assert torch.equal(a, b)
    assert not torch.equal(a, Affine(seed=1)(x, step=6))  # each step draws anew
    assert not torch.equal(a, Affine(seed=2)(x, step=5))


def test_identity_when_every_range_is_zero():
    x = batch()
    torch.testing.assert_close(Affine(max_shift=0, max_rotation=0)(x, 0), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_shift": 1.5},
        {"max_rotation": -1},
        {"scale": (1.2, 1.0)},
        {"scale": 1.2},  # one number: was "cannot unpack non-iterable float object"
        {"scale": (0.9, 1.0, 1.1)},
    ],
)
def test_rejects_bad_ranges(kwargs):
    with pytest.raises(ValueError, match="augment."):
        Affine(**kwargs)


def test_border_padding_keeps_a_light_background_light():
    """zeros padding shifts black bands into a white image; border repeats its edge."""
    white = torch.ones(8, 1, 28, 28)
    shifted = Affine(max_shift=0.2, max_rotation=20)(white, step=1)
    assert float(shifted.min()) < 0.5  # black moved in
    kept = Affine(max_shift=0.2, max_rotation=20, padding="border")(white, step=1)
    torch.testing.assert_close(kept, white)
    x = batch()  # a dark background: both paddings give the same image
    torch.testing.assert_close(Affine(padding="border")(x, 2), Affine()(x, 2))
    with pytest.raises(ValueError, match="augment.padding='white' must be one of zeros, border"):
        Affine(padding="white")


def test_embedding_for_clustering_is_never_augmented():
    images = (batch() * 255).to(torch.uint8)
    plain = DeepClusterModule(CAE())
    augmented = DeepClusterModule(CAE(), augment=Affine(max_shift=0.3, max_rotation=45))
    augmented.model.load_state_dict(plain.model.state_dict())
    torch.testing.assert_close(augmented.embed(images), plain.embed(images))


def test_training_sees_augmented_inputs_and_clean_targets():
    torch.manual_seed(0)
    seen = {}

    def spy(x, step):
        seen["input"] = x.clone()
        return torch.zeros_like(x)  # an augmentation that blanks the image

    module = DeepClusterModule(CAE(), augment=spy)
    module.log = lambda *a, **k: None
    x = batch()
    loss = module.training_step((x, torch.arange(8)), 0)
    expected = torch.nn.functional.mse_loss(module.model(torch.zeros_like(x))[1], x)
    torch.testing.assert_close(loss, expected)  # reconstructs the clean image from the blank
    assert torch.equal(seen["input"], x)


def test_each_ddp_rank_draws_its_own_augmentation():
    from types import SimpleNamespace

    module = DeepClusterModule(CAE(), augment=Affine())
    draws = {}
    for rank in (0, 1, 2):
        module._trainer = SimpleNamespace(global_rank=rank, global_step=7)
        draws[rank] = module.augment_draw()
    assert draws[0] == 7  # one device, or rank 0: the step, as before
    x = batch()
    seen = [module.augment(x, draws[rank]) for rank in (0, 1, 2)]
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[0], seen[2])
    assert not torch.equal(seen[1], seen[2])


def test_accumulated_micro_batches_draw_their_own_augmentation():
    """accumulate_grad_batches=4: the four batches of one optimizer step share the step but
    not the draw; without accumulation the draw is the step, as before."""
    from types import SimpleNamespace

    module = DeepClusterModule(CAE(), augment=Affine())
    module._trainer = SimpleNamespace(global_rank=0, global_step=3, accumulate_grad_batches=4)
    draws = [module.augment_draw(batch_idx) for batch_idx in range(12, 16)]
    assert len(set(draws)) == 4
    module._trainer = SimpleNamespace(global_rank=0, global_step=4, accumulate_grad_batches=4)
    assert module.augment_draw(16) not in draws  # the next step goes on from there
    module._trainer = SimpleNamespace(global_rank=0, global_step=3, accumulate_grad_batches=1)
    assert module.augment_draw(57) == 3


@pytest.mark.parametrize("augment_refinement", [True, False])
def test_refinement_encodes_the_chosen_inputs_toward_the_clean_images_targets(augment_refinement):
    """Method A with augment: the encoder sees the augmented batch (refine.augmented_inputs,
    the default) or the clean one; the target of each image is still its own row of T
    (computed from the clean embedding), indexed by the batch's ids."""
    module = DeepClusterModule(
        CAE(),
        augment=lambda x, step: torch.zeros_like(x),
        augment_refinement=augment_refinement,
    )
    module.log = lambda *a, **k: None
    x, ids = batch(), torch.tensor([5, 0, 7, 2, 9, 1, 3, 4])
    torch.manual_seed(1)
    rotation, targets = torch.linalg.qr(torch.randn(10, 10))[0], torch.randn(12, 10)
    module.set_targets(rotation, targets)
    loss = module.training_step((x, ids), 0)
    seen, other = (torch.zeros_like(x), x) if augment_refinement else (x, torch.zeros_like(x))
    z = module.model.encode(seen)
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(z @ rotation, targets[ids]))
    assert not torch.allclose(z, module.model.encode(other))  # the other input would differ


def test_digits_run_with_augmentation_trains(compose, tmp_path):
    metrics = run(
        compose(
            "augment=affine",
            "manifold=none",  # digits' default job adds UMAP: not what this tests
            "trainer.max_epochs=2",
            "logger=none",
            "plots=false",
            "trainer.enable_progress_bar=false",
            f"output_dir={tmp_path}",
        )
    )
    assert metrics["augment"] == "affine" and metrics["acc"] > 0.3
    losses = [h["loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    "group, in_refinement", [("affine", True), ("affine_pretrain", False), ("none", None)]
)
def test_the_augment_group_reaches_the_module(compose, group, in_refinement):
    """metrics["augment"] only echoes the config: that the module gets the augmentation, and
    refinement's choice of inputs, is checked here."""
    from deepcluster.build import build_parts

    module = build_parts(compose(f"augment={group}", "logger=none")).module
    if in_refinement is None:
        assert module.augment is None
    else:
        assert isinstance(module.augment, Affine)
        assert module.augment_refinement is in_refinement
