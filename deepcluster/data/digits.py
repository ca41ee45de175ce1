"""scikit-learn's bundled 8×8 handwritten digits (1 797 images), upsampled (default 28×28).

Ships with scikit-learn, so it needs no download: the default for demos, tests and CI.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from deepcluster.data.base import ImageDataModule


class DigitsDataModule(ImageDataModule):
    def load(self) -> tuple[torch.Tensor, np.ndarray]:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.from_numpy(bunch.images).float().unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
        x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        return images, bunch.target.astype(np.int64)
