"""Random affine augmentation of a batch tensor, on its device (DEC-DA's pretraining idea).

The CAE sees a shifted / rotated / scaled image and learns to reconstruct the clean one, so
its codes stop encoding where a digit sits. One `affine_grid` + `grid_sample` per batch: no
per-sample PIL work. Seeded per step: the same seed gives the same augmentations, resumed
runs included. The embedding pass for clustering never augments.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PADDINGS = ("zeros", "border")


class Affine:
    """x (B, C, H, W) float in [0, 1], step → augmented x, same shape and range.

    max_shift: largest shift as a fraction of the image side; max_rotation: degrees;
    scale: (low, high) zoom factors (1, 1: none). Each image draws its own, uniformly.
    padding: what fills the pixels moved in from outside the image: zeros (black: MNIST's
    background, the measured runs) or border (the edge pixels repeated: light or photographic
    backgrounds, where black bands would be a feature the codes learn).
    """

    def __init__(
        self,
        max_shift: float = 0.1,
        max_rotation: float = 10.0,
        scale: tuple[float, float] = (1.0, 1.0),
        seed: int = 0,
        padding: str = "zeros",
    ) -> None:
        if isinstance(scale, (str, bytes)) or not hasattr(scale, "__len__") or len(scale) != 2:
            raise ValueError(
                f"augment.scale={scale!r} must be two zoom factors [low, high], e.g. [0.9, 1.1] "
                "([1, 1]: no zoom)"
            )
        low, high = (float(v) for v in scale)
        if not 0 <= max_shift < 1:
            raise ValueError(f"augment.max_shift={max_shift} must be in [0, 1) (a fraction)")
        if not 0 <= max_rotation <= 180:
            raise ValueError(f"augment.max_rotation={max_rotation} must be in [0, 180] degrees")
        if not 0 < low <= high:
            raise ValueError(
                f"augment.scale={list(scale)} must be [low, high] with 0 < low <= high"
            )
        if padding not in PADDINGS:
            raise ValueError(
                f"augment.padding={padding!r} must be one of {', '.join(PADDINGS)} (zeros: black, "
                "for dark backgrounds; border: the edge pixels repeated, for light ones)"
            )
        self.max_shift, self.max_rotation, self.padding = max_shift, max_rotation, padding
        self.scale, self.seed = (low, high), seed

    def params(self, batch: int, step: int) -> torch.Tensor:
        """(B, 2, 3) affine matrices for `step`, drawn on the CPU from (seed, step)."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        u = torch.rand(batch, 4, generator=gen) * 2 - 1  # uniform in [-1, 1]
        angle = u[:, 0] * math.radians(self.max_rotation)
        low, high = self.scale
        zoom = low + (high - low) * (u[:, 1] + 1) / 2
        shift = u[:, 2:] * 2 * self.max_shift  # affine_grid's coordinates span 2 per side
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        return torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        )

    def __call__(self, x: torch.Tensor, step: int) -> torch.Tensor:
        theta = self.params(len(x), step).to(device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(
            x, grid, mode="bilinear", padding_mode=self.padding, align_corners=False
        )
