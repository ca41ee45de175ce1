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
from deepcluster.data.idx import read_idx
from deepcluster.errors import DataError

SPLITS = {"all": ("train", "t10k"), "train": ("train",), "test": ("t10k",)}


class _IDXDataModule(ImageDataModule):
    folder = ""  # torchvision's folder name under root
    debian_dir: Path | None = None  # where a Debian package puts the files, if one exists
    debian_package: str | None = None

    def __init__(
        self, root: str = "./data", split: str = "all", download: bool = True, **kwargs
    ) -> None:
        super().__init__(**kwargs)
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
        stems = [f"{p}-{kind}" for p in SPLITS[self.split]
                 for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]  # fmt: skip
        places = [self.root / self.folder / "raw"]
        if self.debian_dir is not None:
            places.append(self.debian_dir)
        for raw in places:
            found = {s: self._find(raw, s) for s in stems}
            if all(found.values()):
                return found
        return None

    def _try_download(self) -> str:
        """Fetch through torchvision; returns why it failed ('' on success)."""
        import torchvision

        try:
            getattr(torchvision.datasets, self.folder)(str(self.root), train=True, download=True)
            getattr(torchvision.datasets, self.folder)(str(self.root), train=False, download=True)
        except Exception as exc:  # no network, proxy, mirror down: all end the same way
            return f"the download failed ({type(exc).__name__}: {str(exc)[:200]})"
        return ""

    def _missing_error(self, why: str) -> DataError:
        ways = [
            f"set data.root=<a folder holding {self.folder}/raw/*-ubyte> "
            "(or the environment variable DEEPCLUSTER_DATA)",
        ]
        if self.debian_package:
            ways.append(f"on Debian: apt-get install {self.debian_package}")
        ways.append("run on the bundled scikit-learn digits: dataset=digits")
        return DataError(
            f"{self.name}: no {self.split!r} files found under {self.root / self.folder / 'raw'}"
            + (f" or {self.debian_dir}" if self.debian_dir else "")
            + f", and {why}. Ways out: "
            + "; ".join(ways)
            + "."
        )

    # --- loading -----------------------------------------------------------------------
    def load(self) -> tuple[torch.Tensor, np.ndarray]:
        files = self._locate()
        if files is None:
            why = self._try_download() if self.download else "data.download is false"
            files = self._locate()
            if files is None:
                raise self._missing_error(why or "the download left no files")
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
    name = "mnist"
    folder = "MNIST"


class FashionMNISTDataModule(_IDXDataModule):
    name = "fashion_mnist"
    folder = "FashionMNIST"
    debian_dir = Path("/usr/share/datasets/fashion-mnist")
    debian_package = "dataset-fashion-mnist"
