"""CIFAR-10 (60 000 32×32 RGB images, 10 classes) from torchvision's layout:
<root>/cifar-10-batches-py/{data_batch_1..5, test_batch}. split: all | train | test."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from deepcluster.data.base import ImageDataModule
from deepcluster.data.fetch import missing_data_error, torchvision_download
from deepcluster.errors import DataError

FOLDER = "cifar-10-batches-py"
SPLITS = {
    "all": [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) uint8 and (N,) labels from one pickled CIFAR batch (the official format)."""
    try:
        with path.open("rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        KeyError,
        ValueError,
        TypeError,  # unpickled to a list, or labels=None
        AttributeError,
    ) as exc:
        raise DataError(
            f"{path}: not a readable CIFAR-10 batch ({type(exc).__name__}: {exc}). "
            "Delete it and fetch the dataset again."
        ) from None
    if len(data) != len(labels):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data, labels


class CIFAR10DataModule(ImageDataModule):
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
        self.root, self.split, self.download = Path(root).expanduser(), split, download

    def load(self) -> tuple[torch.Tensor, np.ndarray]:
        folder = self.root / FOLDER
        names = SPLITS[self.split]
        if not all((folder / n).is_file() for n in names):
            why = (
                torchvision_download("CIFAR10", self.root)
                if self.download
                else "data.download is false"
            )
            if not all((folder / n).is_file() for n in names):
                raise missing_data_error(
                    f"CIFAR-10: no {self.split!r} batches",
                    [folder],
                    f"{FOLDER}/data_batch_1…5, test_batch",
                    why or "the download left no files",
                )
        parts = [read_batch(folder / n) for n in names]
        return (
            torch.from_numpy(np.concatenate([p[0] for p in parts])),
            np.concatenate([p[1] for p in parts]),
        )
