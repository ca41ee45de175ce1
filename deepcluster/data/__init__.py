"""LightningDataModules: every dataset is one uint8 tensor in memory, batches sliced from it.
Adding one is a file here (a load() returning images and optional labels) and a YAML file."""

from deepcluster.data.array import ArrayDataModule
from deepcluster.data.base import EpochBatchSampler, ImageDataModule, IndexedImages
from deepcluster.data.cifar10 import CIFAR10DataModule
from deepcluster.data.digits import DigitsDataModule
from deepcluster.data.folder import FolderDataModule
from deepcluster.data.mnist import FashionMNISTDataModule, MNISTDataModule
from deepcluster.data.synthetic import SyntheticDataModule

__all__ = [
    "ArrayDataModule",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "EpochBatchSampler",
    "FashionMNISTDataModule",
    "FolderDataModule",
    "ImageDataModule",
    "IndexedImages",
    "MNISTDataModule",
    "SyntheticDataModule",
]
