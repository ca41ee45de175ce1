from deepcluster.models.autoencoder import ACTIVATIONS, CAE, make_activation
from deepcluster.models.module import DeepClusterModule, NonFiniteLossError

__all__ = ["ACTIVATIONS", "CAE", "DeepClusterModule", "NonFiniteLossError", "make_activation"]
