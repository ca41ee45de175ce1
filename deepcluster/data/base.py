"""The in-memory data path shared by every dataset.

The whole dataset is one uint8 tensor (N, C, H, W); a training batch is a slice of it,
converted to float in one vectorised op, with the indices of its images (the refinement looks
up each image's target by index). No per-sample Python work, no PIL.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from deepcluster.errors import DataError


class EpochBatchSampler(Sampler[torch.Tensor]):
    """Yields index batches (B,) of a permutation fixed by (seed, epoch), sharded by rank.

    Fixed by the epoch alone (not by a running generator) so a resumed run sees the same
    order as an uninterrupted one. With several ranks the permutation is padded by wrapping to a
    multiple of world_size and rank r takes every world_size-th index: shards are disjoint
    except for the padding, and of equal length (DDP needs the same number of steps per rank).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if n < 1 or batch_size < 1:
            raise ValueError(f"need n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _per_rank(self) -> int:
        return math.ceil(self.n / self.world_size)

    def __len__(self) -> int:
        return math.ceil(self._per_rank() / self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=gen)
        else:
            order = torch.arange(self.n)
        padded = self._per_rank() * self.world_size
        if padded > self.n:
            order = torch.cat([order, order[: padded - self.n]])
        mine = order[self.rank :: self.world_size]
        yield from mine.split(self.batch_size)


class IndexedImages(Dataset):
    """dataset[idx_batch] → (float images in [0, 1] (B, C, H, W), idx_batch (B,))."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images  # (N, C, H, W) uint8, on any device

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(self.images.device)
        return self.images[idx].float().div_(255.0), idx


class ImageDataModule(L.LightningDataModule):
    """Base class: subclasses implement load() → (images (N, C, H, W) uint8, labels (N,) int64).

    prepare() loads once and validates, so the CLI can fail on bad data before training.
    Labels are kept for evaluation only; nothing in training reads them.
    """

    name = "images"

    def __init__(
        self,
        batch_size: int = 256,
        seed: int = 0,
        num_classes: int = 10,
        device_resident: bool = True,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size} must be >= 1")
        self.batch_size = batch_size
        self.seed = seed
        self.num_classes = num_classes
        self.device_resident = device_resident  # keep the images on the GPU when there is one
        self.images: torch.Tensor | None = None  # (N, C, H, W) uint8
        self.labels: np.ndarray | None = None  # (N,) int64, evaluation only
        self._train_images: torch.Tensor | None = None

    def load(self) -> tuple[torch.Tensor, np.ndarray]:
        raise NotImplementedError

    def prepare(self) -> ImageDataModule:
        if self.images is None:
            images, labels = self.load()
            images = torch.as_tensor(images)
            labels = np.asarray(labels, dtype=np.int64)
            if images.dtype != torch.uint8 or images.ndim != 4:
                raise DataError(
                    f"{self.name}: images must be uint8 (N, C, H, W), "
                    f"got {images.dtype} {tuple(images.shape)}"
                )
            if len(images) != len(labels):
                raise DataError(f"{self.name}: {len(images)} images but {len(labels)} labels")
            self.images, self.labels = images.contiguous(), labels
        return self

    @property
    def num_samples(self) -> int:
        return len(self.prepare().images)

    def setup(self, stage: str | None = None) -> None:
        self.prepare()
        self._train_images = self.images
        trainer = self._trainer_or_none()
        if trainer is not None and self.device_resident:
            device = trainer.strategy.root_device
            if device.type != "cpu":  # one copy on the GPU; batches are sliced there
                self._train_images = self.images.to(device)

    def _trainer_or_none(self) -> L.Trainer | None:
        return getattr(self, "trainer", None)

    def train_dataloader(self) -> DataLoader:
        if self._train_images is None:
            self.setup("fit")
        trainer = self._trainer_or_none()
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        # under DDP each rank takes batch_size / world_size: the global batch stays the same
        per_rank = max(1, self.batch_size // world)
        sampler = EpochBatchSampler(
            len(self._train_images), per_rank, shuffle=True, seed=self.seed,
            rank=rank, world_size=world,
        )  # fmt: skip
        # batch_size=None: the sampler yields whole index batches, fetched in one slice
        return DataLoader(IndexedImages(self._train_images), sampler=sampler, batch_size=None)
