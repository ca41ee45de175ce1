"""Images from a NumPy file: `.npy` (images only) or `.npz` (images, optional labels).

Shapes (N, H, W) or (N, H, W, C) with C = 1, 3 or 4 (RGBA: laid on `background`, as a folder's
transparent images are); uint8, or float in [0, 1]. They are converted to dataset.channels and
resized to dataset.image_size once.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from deepcluster.data.base import ImageDataModule
from deepcluster.data.folder import BACKGROUNDS, check_background
from deepcluster.errors import DataError

log = logging.getLogger(__name__)
DEFAULT_LABELS_KEY = "labels"


class ArrayDataModule(ImageDataModule):
    def __init__(
        self,
        path: str | None = None,
        images_key: str = "images",
        labels_key: str = "labels",
        background: str = "white",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not path:
            raise ValueError("dataset.path is not set: give dataset.path=<file.npy or file.npz>")
        check_background(background)
        self.background = background
        self.path, self.images_key, self.labels_key = (
            Path(path).expanduser(),
            images_key,
            labels_key,
        )
        self.class_names: list[str] | None = None  # the file's label values, when not 0..C-1

    def _read(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self.path.is_dir():
            raise DataError(
                f"dataset.path={self.path} is a folder; dataset=array reads one .npy/.npz "
                f"file. For a folder of image files: dataset=folder dataset.path={self.path}"
            )
        if not self.path.is_file():
            raise DataError(f"dataset.path={self.path}: no such file")
        try:
            data = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(
                f"dataset.path={self.path}: not a readable .npy/.npz file ({exc})"
            ) from None
        if isinstance(data, np.ndarray):
            if self.labels_key not in (None, DEFAULT_LABELS_KEY):  # asked for: say why none
                raise DataError(
                    f"dataset.labels_key={self.labels_key}: {self.path} is a .npy file, which "
                    "holds one array (the images). To score with labels, save both in an .npz "
                    f"(np.savez(path, images=x, {self.labels_key}=y)), or drop the key"
                )
            return data, None
        with data:
            if self.images_key not in data:
                raise DataError(
                    f"{self.path}: no array named {self.images_key!r} (it has "
                    f"{', '.join(data.files)}); set dataset.images_key"
                )
            images = self._member(data, self.images_key, "images_key")
            if self.labels_key in data:
                labels = self._member(data, self.labels_key, "labels_key")
                if len(labels) != len(images):
                    raise DataError(
                        f"{self.path}: {self.images_key!r} holds {len(images)} images but "
                        f"{self.labels_key!r} holds {len(labels)} labels (dataset.images_key, "
                        "dataset.labels_key); give one label per image, or "
                        "dataset.labels_key=null to run without labels"
                    )
                return images, labels
            if self.labels_key not in (None, DEFAULT_LABELS_KEY):  # asked for, not there
                raise DataError(
                    f"{self.path}: no array named {self.labels_key!r} for "
                    f"dataset.labels_key (it has {', '.join(data.files)}); name one of "
                    "them, or dataset.labels_key=null to run without labels"
                )
            others = [f for f in data.files if f != self.images_key]
            if others and self.labels_key is not None:
                log.warning(
                    "%s: no array named %r, so this run has no labels to score it (the "
                    "file also has %s): to score with one, dataset.labels_key=<its name>; "
                    "dataset.labels_key=null silences this",
                    self.path,
                    self.labels_key,
                    ", ".join(others),
                )
            return images, None

    def _member(self, data, key: str, option: str) -> np.ndarray:
        """One array of an .npz, read now (np.load reads members lazily): an object array
        (Python objects, pickled) is refused by name, not with numpy's traceback."""
        try:
            return data[key]
        except ValueError as exc:
            raise DataError(
                f"{self.path}: array {key!r} (dataset.{option}) cannot be read without "
                f"unpickling ({exc}); save it as numbers, e.g. np.asarray(a, dtype=np.int64)"
            ) from None

    def load(self) -> tuple[torch.Tensor, np.ndarray | None]:
        x, labels = self._read()
        if x.ndim == 3 and x.shape[-1] in (3, 4) and x.shape[1] > 4:
            # (N, H, W) with W = 3 or 4 pixels is not an image set: one colour image
            raise DataError(
                f"{self.path}: shape {x.shape} reads as {x.shape[0]} grey images of "
                f"{x.shape[1]}×{x.shape[2]} pixels; if it is one colour image, save it as "
                f"a set of one: x[None] (shape {(1, *x.shape)})"
            )
        side = math.isqrt(x.shape[1]) if x.ndim == 2 else 0
        if side > 1 and side * side == x.shape[1]:
            raise DataError(
                f"{self.path}: shape {x.shape} holds flat rows, not images; if each row is "
                f"a {side}×{side} image, save x.reshape(-1, {side}, {side})"
            )
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
            raise DataError(
                f"{self.path}: images of shape {x.shape}; expected (N, H, W) or "
                "(N, H, W, C) with C = 1, 3 or 4"
            )
        if x.dtype != np.uint8:
            if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
                raise DataError(
                    f"{self.path}: {np.count_nonzero(~np.isfinite(x))} values are NaN or "
                    "infinite; replace them (e.g. np.nan_to_num) before clustering"
                )
            if not np.issubdtype(x.dtype, np.floating) or x.min() < 0 or x.max() > 1:
                hint = ""
                if np.issubdtype(x.dtype, np.integer) and x.min() >= 0:
                    # scale by the data's own white (8-bit values stored wider, a 12-bit
                    # camera's 4095), not the type's: x / 65535 turns 0-255 values black
                    top = int(x.max())
                    white = 2 ** top.bit_length() - 1
                    if top <= 1:
                        hint = "; they hold 0 and 1 only: save x.astype(np.float32)"
                    elif top <= 255:
                        hint = "; if they are 8-bit values, save x.astype(np.uint8)"
                    else:
                        hint = (
                            f"; to scale them, save x / {white} (floats in [0, 1]; {white} is "
                            f"the white of {white.bit_length()}-bit data, the smallest that "
                            f"holds the largest value, {top})"
                        )
                raise DataError(
                    f"{self.path}: {x.dtype} images must be uint8, or float in [0, 1] "
                    f"(found {x.min()} … {x.max()}){hint}"
                )
            x = np.round(x * 255).astype(np.uint8)
        if x.shape[-1] == 4:
            x = self._flattened(x)
        if labels is not None:
            labels = self._checked(np.asarray(labels).reshape(-1))
            values, labels = np.unique(labels, return_inverse=True)  # any values → 0..C-1
            if not np.array_equal(values, np.arange(len(values))):  # 3/7/9, "cat"/"dog": kept
                self.class_names = [str(v) for v in values]  # for predictions.csv, the figures
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), labels

    def _flattened(self, rgba: np.ndarray) -> np.ndarray:
        """RGBA laid on the background, as the folder reader (and deepcluster-predict) lays a
        transparent image: dropping alpha would keep the colour its see-through pixels hide
        (often black: a black drawing on a transparent page would read as one black square)."""
        alpha = rgba[..., 3:].astype(np.float32) / 255
        page = np.float32(BACKGROUNDS[self.background])
        return np.round(rgba[..., :3] * alpha + page * (1 - alpha)).astype(np.uint8)

    def _checked(self, labels: np.ndarray) -> np.ndarray:
        """Labels only score, so a broken one must not score silently: NaN would become a
        class of its own (np.unique gathers every NaN into one value); a negative one often
        marks "unknown", and is scored as a class."""
        if np.issubdtype(labels.dtype, np.floating) and np.isnan(labels).any():
            raise DataError(
                f"{self.path}: {int(np.isnan(labels).sum())} of {len(labels)} labels in "
                f"{self.labels_key!r} are NaN; give every image a label, or run without "
                "labels (dataset.labels_key=null)"
            )
        if np.issubdtype(labels.dtype, np.number) and (labels < 0).any():
            log.warning(
                "%s: %d labels are negative (%s); they are scored as a class of their own",
                self.path,
                int((labels < 0).sum()),
                ", ".join(str(v) for v in np.unique(labels[labels < 0])[:3]),
            )
        return labels
