"""The autoencoders and the LightningModule that trains them.

Names load on first use (PEP 562): checking a command's configuration reads the activation
names of `models.base` (torch only) without importing Lightning, so a refused command answers
in a few seconds instead of after Lightning's imports."""

from importlib import import_module

_WHERE = {
    "ACTIVATIONS": "base",
    "Autoencoder": "base",
    "make_activation": "base",
    "CAE": "cae",
    "CAEDeep": "cae_deep",
    "MLPAutoencoder": "mlp",
    "DeepClusterModule": "module",
    "NonFiniteLossError": "module",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
