"""Images from a NumPy file: `.npy` (images only) or `.npz` (images, optional labels).

Shapes (N, H, W) or (N, H, W, C) with C = 1, 3 or 4 (alpha dropped); uint8, or float in
[0, 1]. They are converted to dataset.channels and resized to dataset.image_size once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deepcluster.data.base import ImageDataModule
from deepcluster.errors import DataError


class ArrayDataModule(ImageDataModule):
    def __init__(
        self,
        path: str | None = None,
        images_key: str = "images",
        labels_key: str = "labels",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not path:
            raise ValueError("dataset.path is not set: give dataset.path=<file.npy or file.npz>")
        self.path, self.images_key, self.labels_key = (
            Path(path).expanduser(),
            images_key,
            labels_key,
        )

    def _read(self) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.path.is_file():
            raise DataError(f"dataset.path={self.path}: no such file")
        try:
            data = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(
                f"dataset.path={self.path}: not a readable .npy/.npz file ({exc})"
            ) from None
        if isinstance(data, np.ndarray):
            return data, None
        with data:
            if self.images_key not in data:
                raise DataError(
                    f"{self.path}: no array named {self.images_key!r} (it has "
                    f"{', '.join(data.files)}); set dataset.images_key"
                )
            labels = data[self.labels_key] if self.labels_key in data else None
            return data[self.images_key], labels

    def load(self) -> tuple[torch.Tensor, np.ndarray | None]:
        x, labels = self._read()
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
            raise DataError(
                f"{self.path}: images of shape {x.shape}; expected (N, H, W) or "
                "(N, H, W, C) with C = 1, 3 or 4"
            )
        x = x[..., :3]  # drop an alpha channel
        if x.dtype != np.uint8:
            if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
                raise DataError(
                    f"{self.path}: {np.count_nonzero(~np.isfinite(x))} values are NaN or "
                    "infinite; replace them (e.g. np.nan_to_num) before clustering"
                )
            if not np.issubdtype(x.dtype, np.floating) or x.min() < 0 or x.max() > 1:
                raise DataError(
                    f"{self.path}: {x.dtype} images must be uint8, or float in [0, 1] "
                    f"(found {x.min()} … {x.max()})"
                )
            x = np.round(x * 255).astype(np.uint8)
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            _, labels = np.unique(labels, return_inverse=True)  # any label values → 0..C-1
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), labels
