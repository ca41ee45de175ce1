"""Your own images: every PNG, JPEG, BMP or TIFF under a folder, decoded once by PIL.

`DIR/<class>/…/image.png`: the immediate subfolders name the classes (used only to score);
images directly in DIR: unlabelled. Each image is converted to grey or RGB and resized to
image_size × image_size as it is read, into the one uint8 tensor every dataset is. An
unreadable or truncated file is skipped with a warning naming it; `skipped` lists them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from deepcluster.data.base import ImageDataModule
from deepcluster.errors import DataError

log = logging.getLogger(__name__)

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)


def read_image(path: Path, size: int, channels: int) -> np.ndarray:
    """(channels, size, size) uint8; raises OSError (PIL's) for a broken file."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()  # decode now: a truncated file fails here, not later
        img = img.convert("L" if channels == 1 else "RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


class FolderDataModule(ImageDataModule):
    def __init__(self, path: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if not path:
            raise ValueError("dataset.path is not set: give dataset.path=<folder of images>")
        self.root = Path(path).expanduser()
        self.class_names: list[str] | None = None

    def load(self) -> tuple[torch.Tensor, np.ndarray | None]:
        root = self.root
        if not root.is_dir():
            raise DataError(f"dataset.path={root}: no such folder")
        files = image_files(root)
        if not files:
            raise DataError(f"dataset.path={root}: no image files (PNG, JPEG, BMP, TIFF) in it")
        labelled = all(f.parent != root for f in files)  # every image sits in a class folder
        images, kept = [], []
        for f in files:
            try:
                images.append(read_image(f, self.image_size, self.channels))
                kept.append(f)
            except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for broken files
                log.warning("skipped %s: %s", f, exc)
                self.skipped.append(str(f))
        if not kept:
            raise DataError(
                f"dataset.path={root}: none of its {len(files)} image files could "
                "be read (see the warnings above)"
            )
        if self.skipped:
            log.warning(
                "%d of %d files could not be read and were skipped", len(self.skipped), len(files)
            )
        self.paths = [str(f.relative_to(root)) for f in kept]
        labels = None
        if labelled:
            classes = [f.relative_to(root).parts[0] for f in kept]
            self.class_names = sorted(set(classes))
            index = {name: i for i, name in enumerate(self.class_names)}
            labels = np.array([index[c] for c in classes], dtype=np.int64)
        log.info(
            "%s: %d images, %s",
            root,
            len(kept),
            f"{len(self.class_names)} classes" if labelled else "unlabelled",
        )
        return torch.from_numpy(np.stack(images)), labels
