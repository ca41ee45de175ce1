"""LightningDataModules: every dataset is one uint8 tensor in memory, batches sliced from it."""

from deepcluster.data.base import EpochBatchSampler, ImageDataModule, IndexedImages
from deepcluster.data.digits import DigitsDataModule
from deepcluster.data.mnist import FashionMNISTDataModule, MNISTDataModule
from deepcluster.data.synthetic import SyntheticDataModule

__all__ = [
    "DigitsDataModule",
    "EpochBatchSampler",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "IndexedImages",
    "MNISTDataModule",
    "SyntheticDataModule",
]
