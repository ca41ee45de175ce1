"""Method B's deeper CAE: repeated convolution + sub-sampling before the code layer."""

from __future__ import annotations

from torch import nn

from deepcluster.models.base import (
    Autoencoder,
    check_shape,
    hidden_layer,
    init_weights,
    last_stride2,
    make_activation,
)


class CAEDeep(Autoencoder):
    """Encoder: [conv3×3, conv3×3, maxpool] at 28 → 14, the same at 14 → 7, conv3×3 + maxpool
    7 → 3, flatten → linear code. The decoder mirrors it (transposed conv 3 → 7, then
    [conv, conv, upsample] blocks back to 28). No skip connections (they hurt clustering).
    Other sizes (a multiple of 4) work the same way (32 → 16 → 8 → 4)."""

    def __init__(
        self,
        activation: str = "relu",
        code_dim: int = 10,
        channels: tuple[int, int, int] = (16, 32, 64),
        in_channels: int = 1,
        image_size: int = 28,
        init: str = "default",
        norm: str = "none",
    ) -> None:
        super().__init__()
        check_shape(image_size, in_channels, code_dim, norm)
        c1, c2, c3 = channels
        s2 = image_size // 4
        s3 = s2 // 2
        pad, out_pad = last_stride2(s2)

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return hidden_layer(nn.Conv2d(cin, cout, 3, padding=1), activation, norm)

        self.code_dim = code_dim
        self.encoder = nn.Sequential(
            *conv(in_channels, c1),
            *conv(c1, c1),
            nn.MaxPool2d(2),  # (B, c1, H/2, W/2)
            *conv(c1, c2),
            *conv(c2, c2),
            nn.MaxPool2d(2),  # (B, c2, H/4, W/4)
            *conv(c2, c3),
            nn.MaxPool2d(2),  # (B, c3, s3, s3)
            nn.Flatten(),
            nn.Linear(c3 * s3 * s3, code_dim),  # (B, d)
        )
        self.decoder = nn.Sequential(
            nn.Linear(code_dim, c3 * s3 * s3),
            make_activation(activation),
            nn.Unflatten(1, (c3, s3, s3)),
            *hidden_layer(
                nn.ConvTranspose2d(c3, c2, 3, stride=2, padding=pad, output_padding=out_pad),
                activation,
                norm,
            ),
            *conv(c2, c2),
            nn.Upsample(scale_factor=2),
            *conv(c2, c1),  # (B, c1, H/2, W/2)
            *conv(c1, c1),
            nn.Upsample(scale_factor=2),  # (B, c1, H, W)
            nn.Conv2d(c1, in_channels, 3, padding=1),
        )
        init_weights(self, init)
