"""Command line: `python -m deepcluster k=10 activation=sigmoid` (Hydra) → run(cfg) → metrics."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from deepcluster.errors import ConfigError, DeepClusterError

log = logging.getLogger("deepcluster")

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
META_KEYS = ("name", "num_classes")  # descriptive keys of a config group, not constructor args


def _output_dir(cfg: DictConfig) -> Path:
    if cfg.get("output_dir"):
        return Path(cfg.output_dir)
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # called outside @hydra.main (tests compose the config themselves)
        return Path.cwd()


def _instantiate(node: DictConfig, drop: tuple[str, ...] = META_KEYS, **kwargs: Any) -> Any:
    """hydra.utils.instantiate without the group's descriptive keys; errors → ConfigError."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    args = {k: v for k, v in node.items() if k not in drop}
    try:
        return instantiate(OmegaConf.create(args), **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, DeepClusterError):
            raise cause from None
        if isinstance(cause, (ValueError, TypeError)):
            raise ConfigError(str(cause)) from None
        raise


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def validate_config(cfg: DictConfig) -> None:
    """Checks that need no data: fail before anything is loaded or trained."""
    for key in ("k", "seed", "pretrain_epochs", "trainer.max_epochs", "data.batch_size"):
        value = OmegaConf.select(cfg, key)
        _require(
            isinstance(value, int) and not isinstance(value, bool),
            f"{key}={value!r} must be an integer",
        )
    _require(cfg.k >= 2, f"k={cfg.k} must be >= 2 (the number of clusters)")
    lr = cfg.optim.lr
    _require(isinstance(lr, (int, float)) and lr > 0, f"optim.lr={lr} must be a number > 0")
    _require(cfg.data.batch_size >= 1, f"data.batch_size={cfg.data.batch_size} must be >= 1")
    _require(cfg.pretrain_epochs >= 0, f"pretrain_epochs={cfg.pretrain_epochs} must be >= 0")
    _require(
        cfg.trainer.max_epochs >= 1, f"trainer.max_epochs={cfg.trainer.max_epochs} must be >= 1"
    )
    from deepcluster.models.autoencoder import ACTIVATIONS

    name = cfg.activation.name
    _require(
        name in ACTIVATIONS,
        f"activation.name={name!r} is unknown; choose one of {', '.join(sorted(ACTIVATIONS))}",
    )


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot write to the output directory {out_dir} ({exc.strerror}). "
            "Choose another with hydra.run.dir=<path>."
        ) from None


def _make_loggers(cfg: DictConfig, out_dir: Path) -> list:
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        if node is None or "_target_" not in node:
            continue
        if name == "wandb":
            loggers.append(
                _instantiate(
                    node,
                    drop=(),
                    save_dir=str(out_dir),
                    name=cfg.get("run_name") or None,
                )
            )
        else:
            loggers.append(_instantiate(node, drop=(), save_dir=str(out_dir)))
    public = _public_config(cfg)
    for lg in loggers:
        lg.log_hyperparams(public)
    return loggers


def _public_config(cfg: DictConfig) -> dict:
    """The resolved config as a dict, minus anything that looks like a secret."""
    data = OmegaConf.to_container(cfg, resolve=True)

    def scrub(node):
        if isinstance(node, dict):
            return {
                k: ("***" if any(s in k.lower() for s in ("key", "token", "secret", "password"))
                    else scrub(v))
                for k, v in node.items()
            }  # fmt: skip
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    return scrub(data)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train, cluster every epoch, write the run's outputs; returns the final metrics."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint

    from deepcluster import plots
    from deepcluster.callbacks import ClusteringCallback
    from deepcluster.models import DeepClusterModule

    started = time.perf_counter()
    validate_config(cfg)
    out_dir = _output_dir(cfg).resolve()
    _check_writable(out_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    dm = _instantiate(cfg.dataset)
    dm.prepare()  # loads now: missing or broken data fails before any training
    n = dm.num_samples
    _require(cfg.k <= n, f"k={cfg.k} is larger than the number of images ({n}); use k <= {n}")

    model = _instantiate(cfg.model)
    module = DeepClusterModule(
        model, lr=cfg.optim.lr, recon_weight=cfg.refine.recon_weight,
        embed_batch_size=cfg.embed_batch_size,
    )  # fmt: skip
    callback = ClusteringCallback(
        clusterer=_instantiate(cfg.clusterer),
        k=cfg.k,
        refine=cfg.refine.enabled,
        pretrain_epochs=cfg.pretrain_epochs,
        update_interval=cfg.refine.update_interval,
        tol=cfg.refine.tol,
        embed_batch_size=cfg.embed_batch_size,
    )
    ckpt_dir = out_dir / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0)
    loggers = _make_loggers(cfg, out_dir)
    trainer = _instantiate(
        cfg.trainer,
        callbacks=[callback, checkpoint],
        logger=loggers or False,
        default_root_dir=str(out_dir),
    )
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "last":
        ckpt_path = ckpt_dir / "last.ckpt"
        ckpt_path = str(ckpt_path) if ckpt_path.exists() else None
        if ckpt_path is None:
            log.warning("ckpt_path=last: no checkpoint in %s yet, starting fresh", ckpt_dir)

    try:
        log.info("training %s on %s (%d images), k=%d → %s", type(model).__name__,
                 dm.name, n, cfg.k, out_dir)  # fmt: skip
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
        if not callback.history:
            raise DeepClusterError("training ended before the first clustering: no results")
        if not trainer.is_global_zero:
            return dict(callback.history[-1])
        metrics = _write_outputs(cfg, out_dir, dm, callback, loggers, started, torch, plots)
    finally:
        _finish_wandb(loggers)
    print(
        f"deepcluster: ACC {metrics['acc']:.4f}  NMI {metrics['nmi']:.4f}  "
        f"ARI {metrics['ari']:.4f}  purity {metrics['purity']:.4f}  "
        f"({cfg.dataset.name}, k={cfg.k}, {len(callback.history)} epochs, "
        f"{metrics['wall_s']:.0f} s) → {out_dir}",
        flush=True,
    )
    return metrics


def _write_outputs(cfg, out_dir: Path, dm, callback, loggers, started, torch, plots) -> dict:
    labels = callback.labels
    final = callback.history[-1]
    metrics = {
        "acc": final["acc"],
        "nmi": final["nmi"],
        "ari": final["ari"],
        "purity": final["purity"],
        "k": int(cfg.k),
        "dataset": cfg.dataset.name,
        "split": cfg.dataset.get("split", "all"),
        "n": int(len(labels)),
        "clusterer": cfg.clusterer.name,
        "activation": cfg.activation.name,
        "model": cfg.model._target_.rsplit(".", 1)[-1],
        "refine": bool(cfg.refine.enabled),
        "seed": int(cfg.seed),
        "epochs": len(callback.history),
        "stop_reason": callback.stop_reason,
        "wall_s": round(time.perf_counter() - started, 2),
        "history": [_jsonable(h) for h in callback.history],
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    idx = np.arange(len(labels))
    np.savetxt(out_dir / "predictions.csv", np.stack([idx, labels, dm.labels], axis=1),
               fmt="%d", delimiter=",", header="index,cluster,label", comments="")  # fmt: skip
    figures = {}
    if cfg.get("plots", True) and callback.last_codes is not None:
        title = f"{cfg.dataset.name} k={cfg.k} {cfg.activation.name}: ACC {metrics['acc']:.3f}"
        fig_dir = out_dir / "figures"
        figures["latent_map"] = plots.latent_map(
            callback.last_codes, labels, fig_dir / "latent_map.png", title
        )
        figures["acc_curve"] = plots.accuracy_curve(
            callback.history, fig_dir / "acc_curve.png", title
        )
        figures["confusion"] = plots.confusion(dm.labels, labels, fig_dir / "confusion.png", title)
    for lg in loggers:
        if hasattr(lg, "log_image") and figures:
            for key, path in figures.items():
                lg.log_image(key=f"figures/{key}", images=[str(path)])
        if hasattr(lg, "experiment") and hasattr(lg.experiment, "summary"):
            for key in ("acc", "nmi", "ari", "purity"):
                lg.experiment.summary[f"final/{key}"] = metrics[key]
    return metrics


def _jsonable(entry: dict) -> dict:
    out = {}
    for key, value in entry.items():
        if isinstance(value, (np.floating, float)):
            value = None if np.isnan(value) else float(value)
        elif isinstance(value, np.integer):
            value = int(value)
        out[key] = value
    return out


def _finish_wandb(loggers: list) -> None:
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger" and lg._experiment is not None:
            import wandb

            wandb.finish()


def _is_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    try:
        metrics = run(cfg)
    except DeepClusterError as exc:
        log.error("%s", exc)
        out = _output_dir(cfg)
        if _is_multirun():
            # one bad job must not stop the sweep: leave a marker the report can read
            try:
                (out / "failed.json").write_text(json.dumps({"error": str(exc)}) + "\n")
            except OSError:
                pass
            return None
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    return metrics["acc"]


def main() -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    _hydra_main()


if __name__ == "__main__":
    main()
