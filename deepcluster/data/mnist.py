"""MNIST and Fashion-MNIST from IDX files in torchvision's layout: <root>/<Folder>/raw/.

split: `all` (train + test = 70 000, as the papers cluster), `train` (60 000) or `test`
(10 000). Files are read directly (plain or .gz) by a validating reader; if they are missing,
torchvision's downloader is tried (when download is on), then a clear error says what to do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deepcluster.data.base import ImageDataModule
from deepcluster.data.fetch import missing_data_error, torchvision_download
from deepcluster.data.idx import read_idx
from deepcluster.errors import DataError

SPLITS = {"all": ("train", "t10k"), "train": ("train",), "test": ("t10k",)}


class _IDXDataModule(ImageDataModule):
    folder = ""  # torchvision's folder name under root
    debian_dir: Path | None = None  # where a Debian package puts the files, if one exists
    debian_package: str | None = None

    def __init__(
        self,
        root: str = "./data",
        split: str = "all",
        download: bool = True,
        num_classes: int = 10,
        **kwargs,
    ) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        if split not in SPLITS:
            raise ValueError(f"dataset.split={split!r} must be one of {', '.join(SPLITS)}")
        self.root = Path(root).expanduser()
        self.split = split
        self.download = download

    # --- where the files are -----------------------------------------------------------
    def _find(self, raw: Path, stem: str) -> Path | None:
        for name in (stem, f"{stem}.gz"):
            if (raw / name).is_file():
                return raw / name
        return None

    def _locate(self) -> dict[str, Path] | None:
        """{stem: path} for every file the split needs, from the first place that has all."""
        stems = [
            f"{p}-{kind}"
            for p in SPLITS[self.split]
            for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
        ]
        places = [self.root / self.folder / "raw"]
        if self.debian_dir is not None:
            places.append(self.debian_dir)
        for raw in places:
            found = {s: self._find(raw, s) for s in stems}
            if all(found.values()):
                return found
        return None

    # --- loading -----------------------------------------------------------------------
    def load(self) -> tuple[torch.Tensor, np.ndarray]:
        files = self._locate()
        if files is None:
            why = (
                torchvision_download(self.folder, self.root)
                if self.download
                else "data.download is false"
            )
            files = self._locate()
            if files is None:
                where = [self.root / self.folder / "raw"] + (
                    [self.debian_dir] if self.debian_dir else []
                )
                raise missing_data_error(
                    f"{self.folder}: no {self.split!r} files",
                    where,
                    f"{self.folder}/raw/*-ubyte",
                    why or "the download left no files",
                    self.debian_package,
                )
        images, labels = [], []
        for part in SPLITS[self.split]:
            img_path = files[f"{part}-images-idx3-ubyte"]
            lab_path = files[f"{part}-labels-idx1-ubyte"]
            x = read_idx(img_path, expect_ndim=3)
            y = read_idx(lab_path, expect_ndim=1)
            if len(x) != len(y):
                raise DataError(
                    f"{img_path} holds {len(x)} images but {lab_path} holds {len(y)} labels; "
                    "one of them is from another download. Fetch both again."
                )
            if y.size and y.max() >= self.num_classes:
                raise DataError(f"{lab_path}: label {int(y.max())} >= {self.num_classes} classes")
            images.append(x)
            labels.append(y)
        x = np.concatenate(images)[:, None]  # (N, 1, 28, 28)
        return torch.from_numpy(x), np.concatenate(labels).astype(np.int64)


class MNISTDataModule(_IDXDataModule):
    folder = "MNIST"


class FashionMNISTDataModule(_IDXDataModule):
    folder = "FashionMNIST"
    debian_dir = Path("/usr/share/datasets/fashion-mnist")
    debian_package = "dataset-fashion-mnist"
