"""deepcluster: deep clustering of images with Lightning and Hydra."""

__version__ = "0.1.0"
