"""Tiny synthetic images with known classes: a bright blob at one of `num_classes` places.

For tests and smoke runs: generated in milliseconds from the seed, trivially clusterable.
"""

from __future__ import annotations

import numpy as np
import torch

from deepcluster.data.base import ImageDataModule


class SyntheticDataModule(ImageDataModule):
    def __init__(self, n: int = 512, num_classes: int = 4, **kwargs) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        if n < 1 or num_classes < 1:
            raise ValueError(f"dataset.n={n} and dataset.num_classes={num_classes} must be >= 1")
        self.n = n
        self.size = self.image_size

    def load(self) -> tuple[torch.Tensor, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        labels = np.arange(self.n) % self.num_classes
        rng.shuffle(labels)
        angle = 2 * np.pi * labels / self.num_classes  # class c: blob on a circle at angle c
        c = (self.size - 1) / 2
        cy = c + 0.3 * self.size * np.sin(angle) + rng.normal(0, 1.0, self.n)
        cx = c + 0.3 * self.size * np.cos(angle) + rng.normal(0, 1.0, self.n)
        yy, xx = np.mgrid[: self.size, : self.size]
        d2 = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
        img = np.exp(-d2 / (2 * (0.1 * self.size) ** 2)) + rng.normal(0, 0.05, d2.shape)
        images = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)[:, None]
        return torch.from_numpy(images), labels.astype(np.int64)
