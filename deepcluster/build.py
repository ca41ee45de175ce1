"""Config → objects. Everything is built here, before any data loads, so a bad value in any
group stops the run with a message that names the group, not after an epoch of training."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deepcluster.errors import ConfigError, DeepClusterError

log = logging.getLogger("deepcluster")

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


def runs_on_cpu(accelerator: str) -> bool:
    import torch

    return accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())


def choose_precision(precision: str, on_cpu: bool) -> tuple[str, str | None]:
    """trainer.precision → (the precision Lightning gets, a line for the log or None).
    `auto` is bf16-mixed only on a CPU with bfloat16 units: AMX (measured: 1.5× the float32
    step on a Xeon) or AVX-512 BF16 (its vector form; not measured). On a GPU at batch 256
    bf16 was slower (62 k against 70 k img/s on an H100: the steps are launch-bound), and on a
    CPU without those units PyTorch emulates it (16× slower on an AVX2 EPYC), so `auto` means
    32-true there. An explicit bf16 on such a CPU is kept, with a warning: it was asked for."""
    from deepcluster.machine import cpu_has_native_bf16

    native = on_cpu and cpu_has_native_bf16()
    if precision == "auto":
        if native:
            return (
                "bf16-mixed",
                "trainer.precision=auto → bf16-mixed (this CPU has AMX or AVX-512 BF16)",
            )
        where = (
            "the GPU at this model's size" if not on_cpu else "this CPU (no AMX or AVX-512 BF16)"
        )
        return (
            "32-true",
            f"trainer.precision=auto → 32-true: bf16 is slower than float32 on {where}",
        )
    if on_cpu and precision.startswith("bf16") and not native:
        return precision, (
            f"trainer.precision={precision} on a CPU without AMX or AVX-512 BF16: PyTorch emulates "
            "bfloat16 there, 16× slower than float32 on an AVX2 EPYC (bench/results_avx2.md); "
            "trainer.precision=32-true (or auto, which picks per machine) trains at full speed"
        )
    return precision, None


def build_trainer(cfg: DictConfig, callbacks: list, out_dir: Path):
    """The Trainer, without loggers: a trainer option Lightning refuses (devices=0, a strategy
    it does not know) is a ConfigError before any logger has made a folder or a W&B run; the
    caller hands it the loggers after (trainer.loggers). trainer.precision=auto becomes what
    this machine runs fastest (choose_precision), in cfg too: the saved config says what ran."""
    asked = str(cfg.trainer.precision)
    precision, why = choose_precision(asked, runs_on_cpu(str(cfg.trainer.accelerator)))
    if why is not None:  # auto's choice is news; a slow precision kept as asked is a warning
        (log.info if asked == "auto" else log.warning)(why)
    cfg.trainer.precision = precision
    return instantiate(
        cfg.trainer,
        "trainer",
        callbacks=callbacks,
        logger=False,
        default_root_dir=cfg.trainer.get("default_root_dir") or str(out_dir),
    )
