from deepcluster.callbacks.clustering import ClusteringCallback

__all__ = ["ClusteringCallback"]
