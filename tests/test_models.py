import pytest
import torch

from deepcluster.models import CAE, CAEDeep, DeepClusterModule, MLPAutoencoder


@pytest.mark.parametrize("cls", [CAE, CAEDeep, MLPAutoencoder])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_cae_shape_round_trip(cls, activation):
    model = cls(activation=activation, code_dim=10)
    x = torch.rand(3, 1, 28, 28)
    z, recon = model(x)
    assert z.shape == (3, 10)
    assert recon.shape == x.shape
    acts = {type(m).__name__ for m in model.modules()}
    assert ("ReLU" in acts) == (activation == "relu")
    assert ("Sigmoid" in acts) == (activation == "sigmoid")


def test_unknown_activation_names_choices():
    with pytest.raises(ValueError, match="activation='gelu2' is unknown; choose one of"):
        CAE(activation="gelu2")


def test_embed_matches_encoder_and_keeps_mode():
    module = DeepClusterModule(CAE())
    images = torch.randint(0, 256, (50, 1, 28, 28), dtype=torch.uint8)
    module.train()
    z = module.embed(images, batch_size=16)
    assert module.training
    expected = module.model.encode(images.float() / 255)
    torch.testing.assert_close(z, expected.detach(), rtol=1e-4, atol=1e-5)


def test_refinement_loss_uses_targets_of_batch_indices():
    torch.manual_seed(0)
    module = DeepClusterModule(CAE())
    x = torch.rand(4, 1, 28, 28)
    idx = torch.tensor([5, 1, 7, 2])
    v = torch.linalg.qr(torch.randn(10, 10))[0]
    targets = torch.randn(8, 10)
    module.set_targets(v, targets)
    assert module.refining
    loss = module.training_step((x, idx), 0)
    expected = torch.nn.functional.mse_loss(module.model.encode(x) @ v, targets[idx])
    torch.testing.assert_close(loss, expected)


def test_lr_must_be_positive():
    with pytest.raises(ValueError, match="optim.lr=0"):
        DeepClusterModule(CAE(), lr=0)


def test_deep_encoder_is_deeper_and_has_no_skips():
    convs = lambda m: sum(isinstance(x, torch.nn.Conv2d) for x in m.encoder.modules())  # noqa: E731
    deep = CAEDeep()
    assert convs(deep) > convs(CAE())
    assert any(isinstance(x, torch.nn.MaxPool2d) for x in deep.encoder.modules())
    # a plain chain: the encoder is one Sequential, so no input reaches the decoder around it
    assert isinstance(deep.encoder, torch.nn.Sequential)


def test_glorot_init_and_bad_init():
    from deepcluster.models.base import init_weights

    for scheme, gain in (("glorot", 1.0), ("glorot_sigmoid", 4.0)):
        model = CAE(activation="sigmoid", init=scheme)
        layers = [
            m
            for m in model.modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))
        ]
        assert len(layers) == 8  # 3 convolutions, 2 linear (to and from the code), 3 deconv
        for m in layers:
            fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(m.weight)
            bound = gain * (6.0 / (fan_in + fan_out)) ** 0.5  # Glorot-uniform's, × the gain
            assert 0.8 * bound < float(m.weight.abs().max()) <= bound, (scheme, m)
            assert float(m.bias.abs().max()) == 0.0
    with pytest.raises(
        ValueError, match="model.init='he2' must be one of default, glorot, glorot_sigmoid"
    ):
        init_weights(model, "he2")


def test_dense_autoencoder_is_dec_n2d_layout_for_any_image():
    model = MLPAutoencoder(in_channels=3, image_size=32)
    widths = [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)]
    assert widths == [500, 500, 2000, 10]
    assert model.encoder[0].__class__ is torch.nn.Flatten
    x = torch.rand(2, 3, 32, 32)
    z, recon = model(x)
    assert z.shape == (2, 10) and recon.shape == x.shape
    with pytest.raises(ValueError, match=r"model.hidden=\[500, 0\]"):
        MLPAutoencoder(hidden=(500, 0))
