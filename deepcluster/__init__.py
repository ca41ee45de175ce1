"""deepcluster: deep clustering of images with Lightning and Hydra."""

__version__ = "0.2.0"
