"""What every autoencoder here is, and the pieces the CAEs share.

The contract (what the LightningModule and the callback rely on): `encode(x)` maps images
(B, C, H, W) float in [0, 1] to codes (B, d); `decode(z)` maps codes back to (B, C, H, W);
`forward(x)` returns both; `code_dim` is d. A new model subclasses `Autoencoder`, builds
`self.encoder` and `self.decoder`, and is one file here plus one YAML in conf/model/.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
}
INITS = ("default", "glorot", "glorot_sigmoid")
NORMS = ("none", "batch")


def make_activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        choices = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"activation={name!r} is unknown; choose one of {choices}") from None


def init_weights(model: nn.Module, scheme: str) -> nn.Module:
    """`default`: PyTorch's (Kaiming-uniform, suits ReLU). `glorot`: Glorot/Xavier-uniform
    weights and zero biases, Keras' default. `glorot_sigmoid`: the same bound × 4, the usual
    correction for logistic units (their slope at 0 is 1/4 where Glorot's derivation assumes
    1): with it a signal crosses the seven Sigmoid layers of the CAE; with plain Glorot it
    fades to ~1e-7 of the input's and the network learns only the mean image (RESULTS.md,
    "The Sigmoid CAE trains")."""
    if scheme not in INITS:
        raise ValueError(f"model.init={scheme!r} must be one of {', '.join(INITS)}")
    if scheme != "default":
        gain = 4.0 if scheme == "glorot_sigmoid" else 1.0
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight, gain=gain)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    return model


def check_shape(image_size: int, in_channels: int, code_dim: int, norm: str) -> None:
    if image_size < 8 or image_size % 4:
        raise ValueError(
            f"model.image_size={image_size} must be a multiple of 4 and >= 8 "
            "(set dataset.image_size, e.g. 28 or 32)"
        )
    if in_channels < 1:
        raise ValueError(f"model.in_channels={in_channels} must be >= 1")
    if code_dim < 1:
        raise ValueError(f"model.code_dim={code_dim} must be >= 1")
    if norm not in NORMS:
        raise ValueError(f"model.norm={norm!r} must be one of {', '.join(NORMS)}")


def hidden_layer(layer: nn.Module, activation: str, norm: str) -> list[nn.Module]:
    """[layer, (BatchNorm,) activation]: a hidden convolution of either CAE."""
    out = [layer]
    if norm == "batch":
        out.append(nn.BatchNorm2d(layer.out_channels))
    return [*out, make_activation(activation)]


def last_stride2(size: int) -> tuple[int, int]:
    """(padding, output_padding) of the 3×3 stride-2 (transposed) convolution between `size`
    and ⌈size/2⌉ or ⌊size/2⌋: the reference's 'valid' when size is odd (7 → 3 → 7 at 28×28),
    'same' when it is even (8 → 4 → 8 at 32×32)."""
    return (0, 0) if size % 2 else (1, 1)


class Autoencoder(nn.Module):
    encoder: nn.Module
    decoder: nn.Module
    code_dim: int

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) float → (B, d)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, d) → (B, C, H, W); linear output (no squashing)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z, self.decode(z)


ActivationFactory = Callable[[], nn.Module]
