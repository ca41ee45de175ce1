"""The in-memory data path shared by every dataset.

The whole dataset is one uint8 tensor (N, C, H, W); a training batch is a slice of it,
converted to float in one vectorised op, with the indices of its images (the refinement looks
up each image's target by index). No per-sample Python work, no PIL.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from deepcluster.config import whole
from deepcluster.errors import DataError


def conform(images: torch.Tensor, size: int, channels: int, chunk: int = 4096) -> torch.Tensor:
    """(N, C, H, W) uint8 → (N, channels, size, size) uint8: grey ↔ RGB (ITU-R 601 luma),
    then an antialiased bilinear resize; a no-op when the images already fit."""
    n, c, h, w = images.shape
    if c == channels and h == w == size:
        return images
    if c not in (1, 3):
        raise DataError(f"images have {c} channels; only 1 (grey) and 3 (RGB) can be converted")
    out = torch.empty((n, channels, size, size), dtype=torch.uint8)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    for start in range(0, n, chunk):  # bounded memory for 70 000 images
        x = images[start : start + chunk].float()
        if c == 3 and channels == 1:
            x = (x * luma).sum(1, keepdim=True)
        elif c == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if (h, w) != (size, size):
            x = F.interpolate(
                x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        out[start : start + chunk] = x.clamp(0, 255).round().to(torch.uint8)
    return out


def auto_batch_size(n: int) -> int:
    """The papers' 256, halved until an epoch has at least 32 steps (at least 8): MNIST keeps
    256; the 1 797 digits get 32, so a short run still takes hundreds of steps."""
    size = 256
    while size > 8 and n / size < 32:
        size //= 2
    return size


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
        per_rank = self._per_rank()
        batches = math.ceil(per_rank / self.batch_size)
        return batches - 1 if self._lone_last(per_rank) else batches

    def _lone_last(self, per_rank: int) -> bool:
        """The last batch would hold one image: it joins the one before (BatchNorm cannot
        train on a single value per channel, which a 1×1 feature map of one image is)."""
        return per_rank > self.batch_size and per_rank % self.batch_size == 1

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
        batches = list(mine.split(self.batch_size))
        if self._lone_last(len(mine)):
            batches[-2:] = [torch.cat(batches[-2:])]
        yield from batches


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
    """Base class: subclasses implement load() → (images (N, C, H, W) uint8, labels (N,) int64
    or None when the data has no labels).

    prepare() loads once and validates, so the CLI can fail on bad data before training.
    Labels are kept for evaluation only; nothing in training reads them. `paths` names each
    image's file where the data has files (folders), for predictions.csv.
    """

    def __init__(
        self,
        batch_size: int | str = 256,
        seed: int = 0,
        num_classes: int | None = None,
        image_size: int = 28,
        channels: int = 1,
        limit: int | None = None,
        device_resident: bool = True,
    ) -> None:
        super().__init__()
        if batch_size != "auto" and (not whole(batch_size) or batch_size < 1):
            raise ValueError(f"data.batch_size={batch_size!r} must be an integer >= 1 or auto")
        if not whole(image_size) or image_size < 1:
            raise ValueError(f"dataset.image_size={image_size!r} must be a whole number >= 1")
        if not whole(channels) or channels not in (1, 3):
            raise ValueError(f"dataset.channels={channels!r} must be 1 (grey) or 3 (RGB)")
        if limit is not None and (not whole(limit) or limit < 1):
            raise ValueError(
                f"dataset.limit={limit!r} must be a whole number >= 1 (or null: every image)"
            )
        self.image_size, self.channels, self.limit = image_size, channels, limit
        self.batch_size = batch_size
        self.seed = seed
        self.num_classes = num_classes
        self.device_resident = device_resident  # keep the images on the GPU when there is one
        self.images: torch.Tensor | None = None  # (N, C, H, W) uint8
        self.labels: np.ndarray | None = None  # (N,) int64, evaluation only; None: unlabelled
        self.paths: list[str] | None = None  # (N,) source files, where there are files
        self.skipped: list[str] = []  # files that could not be read (folders)
        self._train_images: torch.Tensor | None = None

    def load(self) -> tuple[torch.Tensor, np.ndarray | None]:
        raise NotImplementedError

    def prepare(self) -> ImageDataModule:
        if self.images is None:
            images, labels = self.load()
            images = torch.as_tensor(images)
            name = type(self).__name__
            if images.dtype != torch.uint8 or images.ndim != 4:
                raise DataError(
                    f"{name}: images must be uint8 (N, C, H, W), "
                    f"got {images.dtype} {tuple(images.shape)}"
                )
            if labels is not None:
                labels = np.asarray(labels, dtype=np.int64)
                if len(images) != len(labels):
                    raise DataError(f"{name}: {len(images)} images but {len(labels)} labels")
            if self.limit is not None:  # the first `limit` images (quick tries, tests)
                images = images[: self.limit]
                labels = None if labels is None else labels[: self.limit]
                self.paths = None if self.paths is None else self.paths[: self.limit]
            images = conform(images, self.image_size, self.channels)
            self.images, self.labels = images.contiguous(), labels
            if self.batch_size == "auto":
                self.batch_size = auto_batch_size(len(images))
        return self

    @property
    def num_samples(self) -> int:
        return len(self.prepare().images)

    def identity(self) -> dict[str, Any]:
        """What a checkpoint's per-image state (refinement targets, the last labels: rows in the
        images' order) was made for: the number of images, and where they come from files, a
        digest of their names in that order (a folder that changed since has other ones)."""
        ident: dict[str, Any] = {"images": self.num_samples}
        if self.paths is not None:
            names = "\n".join(self.paths).encode("utf-8", "surrogateescape")
            ident["files"] = hashlib.sha1(names).hexdigest()[:16]
        return ident

    @property
    def train_images(self) -> torch.Tensor:
        """The images training reads: on the GPU once setup() ran on one, else the CPU copy."""
        return self._train_images if self._train_images is not None else self.prepare().images

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
            len(self._train_images),
            per_rank,
            shuffle=True,
            seed=self.seed,
            rank=rank,
            world_size=world,
        )
        # batch_size=None: the sampler yields whole index batches, fetched in one slice
        return DataLoader(IndexedImages(self._train_images), sampler=sampler, batch_size=None)
