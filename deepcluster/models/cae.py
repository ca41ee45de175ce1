"""Method A's CAE (DEC/DEKM): 5×5/32 → 5×5/64 → 3×3/128 convs, stride 2, → linear code."""

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


class CAE(Autoencoder):
    """At 28×28: 28 → 14 → 7 → 3 (the last conv unpadded), flatten 1152 → code_dim; the
    decoder mirrors it with transposed convs; the code and the reconstruction are linear.
    Other sizes (a multiple of 4) follow the reference's rule: the last conv is 'same' when
    its input size is even (32 → 16 → 8 → 4). The activation is the variable: every hidden
    layer uses it; `norm=batch` adds BatchNorm after each hidden convolution."""

    def __init__(
        self,
        activation: str = "relu",
        code_dim: int = 10,
        channels: tuple[int, int, int] = (32, 64, 128),
        in_channels: int = 1,
        image_size: int = 28,
        init: str = "default",
        norm: str = "none",
    ) -> None:
        super().__init__()
        check_shape(image_size, in_channels, code_dim, norm)
        c1, c2, c3 = channels
        s2 = image_size // 4  # after two stride-2 convs
        pad, out_pad = last_stride2(s2)
        s3 = (s2 + 2 * pad - 3) // 2 + 1
        hidden = lambda layer: hidden_layer(layer, activation, norm)  # noqa: E731
        self.code_dim = code_dim
        self.encoder = nn.Sequential(
            *hidden(nn.Conv2d(in_channels, c1, 5, stride=2, padding=2)),  # (B, c1, H/2, W/2)
            *hidden(nn.Conv2d(c1, c2, 5, stride=2, padding=2)),  # (B, c2, H/4, W/4)
            *hidden(nn.Conv2d(c2, c3, 3, stride=2, padding=pad)),  # (B, c3, s3, s3)
            nn.Flatten(),
            nn.Linear(c3 * s3 * s3, code_dim),  # (B, d)
        )
        self.decoder = nn.Sequential(
            nn.Linear(code_dim, c3 * s3 * s3),
            make_activation(activation),
            nn.Unflatten(1, (c3, s3, s3)),
            *hidden(
                nn.ConvTranspose2d(c3, c2, 3, stride=2, padding=pad, output_padding=out_pad)
            ),  # (B, c2, H/4, W/4)
            *hidden(nn.ConvTranspose2d(c2, c1, 5, stride=2, padding=2, output_padding=1)),
            nn.ConvTranspose2d(c1, in_channels, 5, stride=2, padding=2, output_padding=1),
        )
        init_weights(self, init)
