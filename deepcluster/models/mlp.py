"""DEC's and N2D's dense autoencoder: flattened pixels → 500 → 500 → 2000 → code, mirrored."""

from __future__ import annotations

from torch import nn

from deepcluster.models.base import Autoencoder, init_weights, make_activation


class MLPAutoencoder(Autoencoder):
    """The fully connected autoencoder of DEC (Xie et al. 2016) and N2D (McConville et al.
    2019): d-500-500-2000-code with the activation on every hidden layer, a linear code and a
    linear reconstruction. It ignores the images' layout, so it suits any size and channel
    count; the CAEs are the models of the two papers this project reproduces."""

    def __init__(
        self,
        activation: str = "relu",
        code_dim: int = 10,
        hidden: tuple[int, ...] = (500, 500, 2000),
        in_channels: int = 1,
        image_size: int = 28,
        init: str = "default",
    ) -> None:
        super().__init__()
        if code_dim < 1 or in_channels < 1 or image_size < 1:
            raise ValueError(
                f"model: code_dim={code_dim}, in_channels={in_channels} and "
                f"image_size={image_size} must all be >= 1"
            )
        if not hidden or min(hidden) < 1:
            raise ValueError(f"model.hidden={list(hidden)} must be a non-empty list of widths >= 1")
        shape = (in_channels, image_size, image_size)
        widths = [in_channels * image_size * image_size, *hidden]
        self.code_dim = code_dim
        self.encoder = nn.Sequential(
            nn.Flatten(),
            *self._stack(widths, activation),
            nn.Linear(widths[-1], code_dim),  # (B, d), linear
        )
        self.decoder = nn.Sequential(
            *self._stack([code_dim, *reversed(hidden)], activation),
            nn.Linear(hidden[0], widths[0]),  # linear reconstruction
            nn.Unflatten(1, shape),
        )
        init_weights(self, init)

    @staticmethod
    def _stack(widths: list[int], activation: str) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Linear(a, b), make_activation(activation)]
        return layers
