from deepcluster.models.autoencoder import ACTIVATIONS, CAE, CAEDeep, make_activation
from deepcluster.models.module import DeepClusterModule, NonFiniteLossError

__all__ = [
    "ACTIVATIONS",
    "CAE",
    "CAEDeep",
    "DeepClusterModule",
    "NonFiniteLossError",
    "make_activation",
]
