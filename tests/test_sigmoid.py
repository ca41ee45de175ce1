"""The all-Sigmoid CAE trains (issue 11): its reconstruction loss leaves the mean image.

The mean-image loss is what a network that ignores its input reaches; with PyTorch's or
Keras' default initialisation the Sigmoid CAE sits there (RESULTS.md, "Sigmoid").
"""

import pytest

from deepcluster.build import instantiate
from deepcluster.run import run
from tests.conftest import real_data_root


def mean_image_loss(cfg) -> float:
    x = instantiate(cfg.dataset, "dataset").prepare().images.float() / 255
    return float(((x - x.mean(0)) ** 2).mean())


def losses(compose, tmp_path, *overrides) -> tuple[list[float], float]:
    cfg = compose(
        "activation=sigmoid",
        "refine=none",  # the reconstruction loss throughout
        "augment=none",  # the plain reconstruction (digits' default job adds augmentation)
        "manifold=none",  # and the codes as they are (digits' default job adds UMAP)
        "data.batch_size=8",  # small batches: hundreds of steps in a few epochs
        "logger=none",
        "plots=false",
        "baseline=false",
        "trainer.enable_progress_bar=false",
        *overrides,
        f"output_dir={tmp_path}",
    )
    metrics = run(cfg)
    return [h["loss"] for h in metrics["history"]], mean_image_loss(cfg)


def test_sigmoid_cae_trains_on_digits(compose, tmp_path):
    """Default init for Sigmoid (glorot_sigmoid), same layers as the ReLU CAE."""
    loss, mean = losses(compose, tmp_path, "trainer.max_epochs=4", "cluster_every_n_epochs=4")
    assert loss[-1] < 0.6 * mean, [round(v / mean, 3) for v in loss]


def test_sigmoid_cae_with_batchnorm_trains_within_two_epochs(compose, tmp_path):
    loss, mean = losses(
        compose, tmp_path, "model.norm=batch", "trainer.max_epochs=2", "cluster_every_n_epochs=2"
    )
    assert loss[-1] < 0.6 * mean, [round(v / mean, 3) for v in loss]


def test_plain_glorot_stays_at_the_mean_image(compose, tmp_path):
    """What the fix fixes: Keras' default init leaves the Sigmoid CAE at the mean image."""
    loss, mean = losses(
        compose, tmp_path, "model.init=glorot", "trainer.max_epochs=4", "cluster_every_n_epochs=4"
    )
    assert loss[-1] > 0.95 * mean


@pytest.mark.skipif(real_data_root() is None, reason="needs real MNIST (DEEPCLUSTER_DATA)")
def test_sigmoid_cae_trains_on_a_2000_image_mnist_slice(compose, tmp_path):
    loss, mean = losses(
        compose,
        tmp_path,
        "dataset=mnist",
        f"data.root={real_data_root()}",
        "dataset.limit=2000",
        "trainer.max_epochs=6",
        "cluster_every_n_epochs=6",
    )
    assert loss[-1] < 0.6 * mean, [round(v / mean, 3) for v in loss]
