from deepcluster.models.base import ACTIVATIONS, Autoencoder, make_activation
from deepcluster.models.cae import CAE
from deepcluster.models.cae_deep import CAEDeep
from deepcluster.models.mlp import MLPAutoencoder
from deepcluster.models.module import DeepClusterModule, NonFiniteLossError

__all__ = [
    "ACTIVATIONS",
    "CAE",
    "CAEDeep",
    "Autoencoder",
    "DeepClusterModule",
    "MLPAutoencoder",
    "NonFiniteLossError",
    "make_activation",
]
