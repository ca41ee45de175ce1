"""Config → objects. Everything is built here, before any data loads, so a bad value in any
group stops the run with a message that names the group, not after an epoch of training."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deepcluster.errors import ConfigError, DeepClusterError

# keys of a group node that describe it or schedule it, not constructor arguments
NOT_ARGUMENTS = frozenset({"name", "every_n_epochs", "in_refinement", "pretrain_epochs"})


def instantiate(
    node: DictConfig | None, group: str, /, drop: frozenset = NOT_ARGUMENTS, **kwargs: Any
) -> Any:
    """hydra.utils.instantiate of a group option without its `drop` keys; the constructor's
    complaints → ConfigError naming the group."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    if node is None or node.get("_target_") is None:
        return None
    args = {k: v for k, v in node.items() if k not in drop}
    try:
        return hydra_instantiate(OmegaConf.create(args), **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, DeepClusterError):
            raise cause from None
        if isinstance(cause, (ValueError, TypeError, MisconfigurationException)):
            raise ConfigError(f"{group}={node.get('name', node._target_)}: {cause}") from None
        if isinstance(cause, ImportError):
            if "Error locating target" in str(exc):  # the target itself is not importable
                raise ConfigError(f"{group}: cannot import {node._target_} ({cause})") from None
            # raised by the constructor: an optional requirement of the option (torch_xla)
            raise ConfigError(f"{group}={node.get('name', node._target_)}: {cause}") from None
        raise


def one_cycle(lr: float, peak_lr: float, warmup_fraction: float, steps: int) -> Callable:
    """LambdaLR factor per step: linear warm-up from lr to peak_lr over the first
    warmup_fraction of `steps`, cosine down to lr/100 at `steps`; after that (refinement) 1.0."""
    warm = max(1, int(warmup_fraction * steps))
    peak = peak_lr / lr

    def factor(step: int) -> float:
        if step >= steps:
            return 1.0
        if step < warm:
            return 1.0 + (peak - 1.0) * step / warm
        t = (step - warm) / max(1, steps - warm)
        return 0.01 + (peak - 0.01) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


@dataclass
class Parts:
    datamodule: Any
    module: Any
    callback: Any
    clusterer: Any
    manifold: Any


def build_parts(cfg: DictConfig) -> Parts:
    """The dataset (not loaded yet), model, clustering callback and their pieces."""
    from deepcluster.callbacks import ClusteringCallback
    from deepcluster.clustering.schedule import ClusteringSchedule
    from deepcluster.models import DeepClusterModule

    datamodule = instantiate(cfg.dataset, "dataset")
    model = instantiate(cfg.model, "model")
    clusterer = instantiate(cfg.clusterer, "clusterer")
    manifold = instantiate(cfg.manifold, "manifold")
    augment = instantiate(cfg.get("augment"), "augment")
    refine = cfg.refine
    # the cycle spans the reconstruction epochs that will run (a run may stop before the end
    # of pretraining: then it ends there, at the low rate, not mid-cycle); none when
    # refinement starts at once (pretrain_epochs=0): it runs at optim.lr throughout
    epochs_of_schedule = (
        min(cfg.pretrain_epochs, cfg.trainer.max_epochs)
        if refine.enabled
        else max(1, cfg.trainer.max_epochs)
    )
    lr_schedule = None
    if cfg.optim.schedule == "one_cycle":
        o = cfg.optim
        lr_schedule = lambda steps_per_epoch: one_cycle(  # noqa: E731
            o.lr, o.peak_lr, o.warmup_fraction, steps_per_epoch * epochs_of_schedule
        )
    try:
        module = DeepClusterModule(
            model,
            lr=cfg.optim.lr,
            recon_weight=refine.recon_weight,
            embed_batch_size=cfg.embed_batch_size,
            channels_last=cfg.channels_last,
            augment=augment,
            augment_refinement=refine.augmented_inputs,
            lr_schedule=lr_schedule,
            refine_method=refine.method if refine.enabled else "none",
            dec_alpha=refine.alpha,
        )
        schedule = ClusteringSchedule(
            refine=refine.enabled,
            pretrain_epochs=cfg.pretrain_epochs,
            update_interval=refine.update_interval,
            cadence=refine.cadence,
            tol=refine.tol,
            max_iterations=refine.max_iterations,
            patience=refine.patience,
            cluster_every_n_epochs=cfg.cluster_every_n_epochs,
            manifold=manifold is not None,
            manifold_every_n_epochs=cfg.manifold.get("every_n_epochs", 1) if manifold else 0,
        )
    except ValueError as exc:  # validate() checked these; this guards direct Python use
        raise ConfigError(str(exc)) from None
    callback = ClusteringCallback(
        clusterer,
        k=cfg.k,
        schedule=schedule,
        manifold=manifold,
        first_n_init=refine.first_n_init,
        k_search=OmegaConf.to_container(cfg.k_search),
        seed=cfg.seed,
        target_scale=refine.target_scale,
        refine_method=refine.method,
        dec_alpha=refine.alpha,
    )
    return Parts(datamodule, module, callback, clusterer, manifold)


def build_trainer(cfg: DictConfig, callbacks: list, out_dir: Path):
    """The Trainer, without loggers: a trainer option Lightning refuses (devices=0, a strategy
    it does not know) is a ConfigError before any logger has made a folder or a W&B run; the
    caller hands it the loggers after (trainer.loggers)."""
    return instantiate(
        cfg.trainer,
        "trainer",
        callbacks=callbacks,
        logger=False,
        default_root_dir=cfg.trainer.get("default_root_dir") or str(out_dir),
    )
