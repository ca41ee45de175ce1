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
    every = OmegaConf.select(cfg, "manifold.every_n_epochs", default=1)
    _require(
        isinstance(every, int) and not isinstance(every, bool) and every >= 1,
        f"manifold.every_n_epochs={every!r} must be an integer >= 1",
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
        probe = out_dir / f".write_test_{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot write to the output directory {out_dir} ({exc.strerror}). "
            "Choose another with hydra.run.dir=<path>."
        ) from None


def _make_manifold(cfg: DictConfig) -> tuple[Any, int]:
    """(manifold callable or None for `manifold=none`, how often it runs in epochs)."""
    node = cfg.get("manifold")
    if node is None or node.get("_target_") is None:
        return None, 1
    return _instantiate(node, drop=(*META_KEYS, "every_n_epochs")), node.get("every_n_epochs", 1)


def _make_loggers(cfg: DictConfig, out_dir: Path) -> list:
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        if node is None or "_target_" not in node:
            continue
        if name == "wandb":
            group, tags, job_name = _sweep_identity()
            loggers.append(
                _instantiate(
                    node,
                    drop=("group", "tags"),
                    save_dir=str(out_dir),
                    name=cfg.get("run_name") or job_name,
                    group=node.get("group") or group,  # a sweep's jobs share its group
                    tags=[*(node.get("tags") or []), *tags],
                )
            )
        else:
            loggers.append(_instantiate(node, drop=(), save_dir=str(out_dir)))
    public = _public_config(cfg)
    for lg in loggers:
        lg.log_hyperparams(public)
    return loggers


def _sweep_identity() -> tuple[str | None, list[str], str | None]:
    """(group, tags, name) of a multirun job for W&B: the sweep folder, its overrides."""
    if not _is_multirun():
        return None, [], None
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    tags = [o[:64] for o in _task_overrides()]  # W&B caps tags at 64 characters
    return str(hc.sweep.dir), tags, hc.job.override_dirname or f"job {hc.job.num}"


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


def _quiet_libraries() -> None:
    """One copy of each Lightning log line (through Hydra's handlers), and no sales pitch."""
    import warnings

    if logging.getLogger().handlers:  # Hydra (or the caller) configured the root logger
        for name in ("lightning", "lightning.pytorch"):
            lightning_log = logging.getLogger(name)
            for handler in list(lightning_log.handlers):
                lightning_log.removeHandler(handler)
            lightning_log.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(lambda record: "litlogger" not in record.getMessage())
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train, cluster every epoch, write the run's outputs; returns the final metrics."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint

    from deepcluster import plots
    from deepcluster.callbacks import ClusteringCallback
    from deepcluster.models import DeepClusterModule, NonFiniteLossError

    started = time.perf_counter()
    _quiet_libraries()
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
        embed_batch_size=cfg.embed_batch_size, channels_last=bool(cfg.get("channels_last", False)),
    )  # fmt: skip
    manifold, manifold_every = _make_manifold(cfg)
    callback = ClusteringCallback(
        clusterer=_instantiate(cfg.clusterer),
        manifold=manifold,
        manifold_every_n_epochs=manifold_every,
        k=cfg.k,
        refine=cfg.refine.enabled,
        pretrain_epochs=cfg.pretrain_epochs,
        update_interval=cfg.refine.update_interval,
        tol=cfg.refine.tol,
        embed_batch_size=cfg.embed_batch_size,
    )
    ckpt_dir = out_dir / "checkpoints"
    # every epoch end: the newest epoch-*.ckpt, and last.ckpt linking to it (what resume loads)
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, save_last="link", save_top_k=1)
    loggers = _make_loggers(cfg, out_dir)
    trainer = _instantiate(
        cfg.trainer,
        callbacks=[callback, checkpoint],
        logger=loggers or False,
        default_root_dir=str(out_dir),
    )
    ckpt_path = _resolve_ckpt_path(cfg.get("ckpt_path"), out_dir)

    succeeded = False
    try:
        log.info("training %s on %s (%d images), k=%d → %s", type(model).__name__,
                 dm.name, n, cfg.k, out_dir)  # fmt: skip
        try:
            # weights_only: resuming never unpickles arbitrary code from a checkpoint
            trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
        except NonFiniteLossError as exc:
            last = ckpt_dir / "last.ckpt"
            kept = (
                f" The last good checkpoint is kept: {last}."
                if last.exists()
                else " No checkpoint had been written yet."
            )
            raise NonFiniteLossError(f"{exc}{kept}") from None
        if not callback.history:
            raise DeepClusterError("training ended before the first clustering: no results")
        if not trainer.is_global_zero:
            return dict(callback.history[-1])
        metrics = _write_outputs(cfg, out_dir, dm, callback, loggers, started, torch, plots)
        _write_run_info(out_dir, callback, started, ckpt_path)
        succeeded = True
    finally:
        _finish_wandb(loggers, exit_code=0 if succeeded else 1)
    print(
        f"deepcluster: ACC {metrics['acc']:.4f}  NMI {metrics['nmi']:.4f}  "
        f"ARI {metrics['ari']:.4f}  purity {metrics['purity']:.4f}  "
        f"({cfg.dataset.name}, k={cfg.k}, {len(callback.history)} epochs, "
        f"{time.perf_counter() - started:.0f} s) → {out_dir}",
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
        "manifold": OmegaConf.select(cfg, "manifold.name", default="none"),
        "activation": cfg.activation.name,
        "model": cfg.model._target_.rsplit(".", 1)[-1],
        "refine": bool(cfg.refine.enabled),
        "seed": int(cfg.seed),
        "epochs": len(callback.history),
        "stop_reason": callback.stop_reason,
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
        result = callback.last_result
        if result is not None and "linkage" in result.extra:
            figures["dendrogram"] = plots.dendrogram(
                result.extra["linkage"], int(cfg.k), fig_dir / "dendrogram.png", title
            )
    for lg in loggers:
        if hasattr(lg, "log_image") and figures:
            for key, path in figures.items():
                lg.log_image(key=f"figures/{key}", images=[str(path)])
        if hasattr(lg, "experiment") and hasattr(lg.experiment, "summary"):
            for key in ("acc", "nmi", "ari", "purity"):
                lg.experiment.summary[f"final/{key}"] = metrics[key]
    return metrics


def _write_run_info(out_dir: Path, callback, started: float, ckpt_path: str | None) -> None:
    """What varies between identical runs (timings, memory) lives apart from metrics.json."""
    import resource

    info = {
        "wall_s": round(time.perf_counter() - started, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "resumed_from": ckpt_path,
        "timings": [_jsonable(t) for t in callback.timings],
        "ddp_rank_agreement_checks": callback.rank_checks,
    }
    (out_dir / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")


def _task_overrides() -> list[str]:
    """This job's command-line overrides, minus the ones that don't change the result."""
    try:
        from hydra.core.hydra_config import HydraConfig

        task = list(HydraConfig.get().overrides.task)
    except ValueError:
        return []
    return sorted(o for o in task if not o.startswith(("ckpt_path=", "hydra.", "trainer.enable_")))


def _resolve_ckpt_path(value: str | None, out_dir: Path) -> str | None:
    """`last`: this run dir's last.ckpt, else the newest earlier run with the same overrides.

    Hydra gives each launch a fresh timestamped directory, so "the same command plus
    ckpt_path=last" looks for the newest sibling run whose overrides match.
    """
    if value in (None, ""):
        return None
    if value != "last":
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigError(f"ckpt_path={value}: no such checkpoint file")
        return str(path.resolve())
    own = out_dir / "checkpoints" / "last.ckpt"
    if own.is_file():
        return str(own)
    wanted = _task_overrides()
    candidates = []
    base = out_dir.parent.parent if out_dir.parent.parent.name else out_dir.parent
    for overrides_file in base.glob("*/*/.hydra/overrides.yaml"):
        run_dir = overrides_file.parent.parent
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        if run_dir == out_dir or not ckpt.is_file():
            continue
        theirs = OmegaConf.load(overrides_file) or []
        theirs = sorted(
            o for o in theirs if not o.startswith(("ckpt_path=", "hydra.", "trainer.enable_"))
        )
        if theirs == wanted:
            candidates.append(ckpt)
    if not candidates:
        log.warning("ckpt_path=last: no earlier checkpoint of this command found, starting fresh")
        return None
    newest = max(candidates, key=lambda c: c.stat().st_mtime)
    log.info("resuming from %s", newest)
    return str(newest)


def _jsonable(entry: dict) -> dict:
    out = {}
    for key, value in entry.items():
        if isinstance(value, (np.floating, float)):
            value = None if np.isnan(value) else float(value)
        elif isinstance(value, np.integer):
            value = int(value)
        out[key] = value
    return out


def _finish_wandb(loggers: list, exit_code: int = 0) -> None:
    """Close the W&B run (marked failed on a non-zero exit code): sweeps must not leak runs."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger" and lg._experiment is not None:
            import wandb

            wandb.finish(exit_code=exit_code)


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
    except Exception as exc:
        if _is_multirun():
            # one bad job must not stop the sweep: leave a marker the report can read
            if isinstance(exc, DeepClusterError):
                log.error("%s", exc)
                error = str(exc)
            else:
                log.exception("job crashed")
                error = f"{type(exc).__name__}: {exc}"
            try:
                (_output_dir(cfg) / "failed.json").write_text(json.dumps({"error": error}) + "\n")
            except OSError:
                pass
            return None
        if not isinstance(exc, DeepClusterError):
            raise  # a bug, not bad input: keep the traceback
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    return metrics["acc"]


def _preflight_output_dirs(argv: list[str]) -> str | None:
    """Hydra creates the run directory before our code runs: check it can, with a clear error."""
    wanted = [
        a.split("=", 1)[1] for a in argv if a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))
    ]
    for target in wanted or ["."]:
        path = Path(target.strip("'\"")).expanduser().absolute()
        ancestor = path
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            return f"cannot create the output directory {path}: {ancestor} is not a directory"
        if not os.access(ancestor, os.W_OK | os.X_OK):
            return f"cannot create the output directory {path}: {ancestor} is not writable"
    return None


def main() -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    problem = _preflight_output_dirs(sys.argv[1:])
    if problem:
        print(f"error: {problem}. Choose another with hydra.run.dir=<path>.", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
