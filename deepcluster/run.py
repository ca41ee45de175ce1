"""run(cfg): check → build → load → train (or only cluster) → write the outputs → metrics."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deepcluster import resume as resume_mod
from deepcluster.build import build_parts, build_trainer
from deepcluster.config import require, validate
from deepcluster.errors import ConfigError, RunStopped, TrainingError
from deepcluster.tracking import (
    check_wandb_options,
    finish_wandb,
    hydra_config,
    hydra_saved_configs,
    is_multirun,
    log_final,
    make_loggers,
    public_config,
    scrub_saved_config,
)

log = logging.getLogger("deepcluster")


def output_dir(cfg: DictConfig) -> Path:
    if cfg.get("output_dir"):
        return Path(cfg.output_dir).resolve()
    hc = hydra_config()
    return Path(hc.runtime.output_dir if hc is not None else Path.cwd()).resolve()


def check_writable(out_dir: Path, cfg: DictConfig) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write_test_{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        # the key that chose this folder: output_dir= wins over Hydra's run or sweep folder
        key = (
            "output_dir"
            if cfg.get("output_dir")
            else "hydra.sweep.dir"
            if is_multirun()
            else "hydra.run.dir"
        )
        raise ConfigError(
            f"cannot write to the output directory {out_dir} ({exc.strerror}). "
            f"Choose another with {key}=<path>."
        ) from None


def quiet_libraries() -> None:
    """One copy of each Lightning log line (through Hydra's handlers), and no sales pitch."""
    if logging.getLogger().handlers:  # Hydra (or the caller) configured the root logger
        for name in ("lightning", "lightning.pytorch"):
            lightning_log = logging.getLogger(name)
            for handler in list(lightning_log.handlers):
                lightning_log.removeHandler(handler)
            lightning_log.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(lambda record: "litlogger" not in record.getMessage())
    for message in (
        ".*LeafSpec.*is deprecated",
        ".*does not have many workers.*",
        ".*smaller than the logging interval.*",
    ):
        warnings.filterwarnings("ignore", message=message)


def _resume_plan(cfg: DictConfig, out_dir: Path) -> resume_mod.Resume:
    hc = hydra_config()
    # siblings are runs of the same command only in a single run's keyed folder
    keyed = (
        hc is not None
        and not is_multirun()
        and out_dir.parent.name == resume_mod.run_key(hc.job.override_dirname, cfg.get("ckpt_path"))
    )
    return resume_mod.resolve(cfg.get("ckpt_path"), out_dir, search_siblings=keyed)


class Standalone:
    """The little of a Trainer the callback needs, for clustering a trained model once."""

    is_global_zero, world_size, should_stop, global_step = True, 1, False, 0

    def __init__(self, datamodule: Any, epoch: int) -> None:
        self.datamodule, self.current_epoch = datamodule, epoch

    class strategy:  # noqa: N801  (stands in for trainer.strategy)
        @staticmethod
        def broadcast(obj: Any, src: int = 0) -> Any:
            return obj


def cluster_only(cfg: DictConfig, ckpt_path: str, parts, out_dir: Path) -> None:
    """`trainer.max_epochs=0`: load the weights, embed and cluster once (no training). The
    weights are kept in the run folder (weights.ckpt, without the optimizer's state): the
    checkpoint named may be a last.ckpt that moves on when its run continues, and
    deepcluster-predict must embed with the weights these clusters came from."""
    import torch

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    kept = {key: ckpt[key] for key in ("state_dict", "epoch", "refinement") if key in ckpt}
    # the training checkpoint behind the weights, through a chain of readings
    source = ckpt.get("source") or str(Path(ckpt_path).resolve())
    torch.save({**kept, "source": source}, out_dir / "weights.ckpt")
    # moves 0.1's buffers out of the weights; any refine.method reads any checkpoint here
    load_weights(cfg, ckpt_path, ckpt, parts.module, continuing=False)
    cluster_once(parts, int(ckpt.get("epoch", 0)))
    parts.callback.schedule.stop_reason = f"cluster_only: {ckpt_path}"


def load_weights(cfg: DictConfig, ckpt_path: str, ckpt: dict, module, continuing: bool) -> None:
    """The checkpoint's refinement state and weights into `module`; weights of other shapes
    are refused, naming the keys to give (weights_do_not_fit)."""
    module.on_load_checkpoint(ckpt, continuing=continuing)
    try:
        module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        if "Error(s) in loading state_dict" not in str(exc):
            raise
        raise weights_do_not_fit(cfg, ckpt_path) from exc


def check_checkpoint_fits(cfg: DictConfig, ckpt_path: str, module, images: dict) -> None:
    """Refuse a checkpoint whose weights do not fit this model, or whose refinement this
    config cannot go on with (another DEC k; other `images` than its targets' rows), before
    anything in the run folder changes (the loggers, an earlier run set aside, config.yaml,
    weights.ckpt): a refused command leaves it as it was. A copy of the module takes the
    weights; Lightning loads them again into the real one."""
    import copy

    import torch

    from deepcluster.callbacks.clustering import (
        dec_centres_differ,
        images_differ,
        refinement_on_other_images,
    )

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    continuing = cfg.trainer.max_epochs != 0
    if continuing and "optimizer_states" not in ckpt:
        raise weights_only(ckpt_path, ckpt.get("source"))
    probe = copy.deepcopy(module)
    load_weights(cfg, ckpt_path, ckpt, probe, continuing)
    centres = probe.centers  # DEC's, inside its refinement
    if continuing and centres is not None and cfg.k != "auto" and len(centres) != int(cfg.k):
        raise dec_centres_differ(int(cfg.k), len(centres))
    if not (continuing and probe.refining):
        return
    states = [v for key, v in ckpt.get("callbacks", {}).items() if "ClusteringCallback" in key]
    before = states[0].get("data") if states else None
    if before is None:  # a checkpoint older than the identity: its targets' rows
        before = {"images": len(probe.targets)}
    what = images_differ(before, images)
    if what is not None:
        raise refinement_on_other_images(what)


def last_checkpoint(ckpt_dir: Path) -> str:
    """What a run that stopped early leaves to continue from (SIGTERM, a NaN loss): one
    sentence, the same for every way of stopping."""
    last = ckpt_dir / "last.ckpt"
    if not last.exists():
        return "No checkpoint had been written yet."
    return f"Its last checkpoint is kept ({last}): ckpt_path=last continues from it."


def stop_on_sigterm(where: str):
    """SIGTERM outside Lightning's fit (clustering a trained model, the results being written)
    stops the run as inside it: status 1 and what continues it, not the default handler's
    silent 143. Returns what puts the earlier handler back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signals go to the main thread only

    def stop(signum, frame):
        raise RunStopped(f"stopped by SIGTERM {where}")

    before = signal.signal(signal.SIGTERM, stop)
    return lambda: signal.signal(signal.SIGTERM, before)


def keep_weights(ckpt_path: str, ckpt_dir: Path) -> None:
    """A finished checkpoint continued into a new folder trains nothing, so Lightning writes
    no checkpoint there: copy the weights the results came from, which deepcluster-predict
    reads as the folder's own checkpoints/last.ckpt."""
    import shutil

    own = ckpt_dir / "last.ckpt"
    if not own.exists():
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(ckpt_path).resolve(), own)


def trainable(ckpt_path: str) -> bool:
    """Is this a checkpoint training can continue (a file with its optimizer's state)?"""
    import torch

    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError):
        return False
    return isinstance(ckpt, dict) and "optimizer_states" in ckpt


# the keys that give the model its shape, as a user sets them (model.* from the dataset's)
SHAPING = {"in_channels": "dataset.channels", "image_size": "dataset.image_size", "name": "model"}


def weights_only(ckpt_path: str, source: str | None) -> ConfigError:
    """Training continues a checkpoint with its optimizer's state and its place in the schedule;
    a cluster-only run's weights.ckpt (or any bare state dict) has neither. The checkpoint it
    was copied from is offered only while it is there and trainable (a source run that
    trained on keeps only its newest epoch file)."""
    where = (
        f"continue the checkpoint it was copied from: ckpt_path={source}"
        if source and trainable(source)
        else "continue a run's checkpoints/last.ckpt instead"
    )
    return ConfigError(
        f"ckpt_path={ckpt_path} holds weights only (no optimizer state, no epoch to go on "
        f"from), so training cannot continue it: {where}; or cluster these weights again "
        "with trainer.max_epochs=0"
    )


def weights_do_not_fit(cfg: DictConfig, ckpt_path: str) -> ConfigError:
    """The checkpoint's weights have other shapes than the model this config builds: name the
    keys that differ from the config of the run that trained them (its folder's config.yaml),
    and the value to give each."""
    trained = resume_mod.run_folder(ckpt_path) / "config.yaml"
    hint = "give the same dataset.image_size, dataset.channels and model (and its keys)"
    if trained.is_file():
        before = OmegaConf.to_container(OmegaConf.load(trained).get("model", {}), resolve=True)
        now = OmegaConf.to_container(cfg.model, resolve=True)
        differ = [
            f"{SHAPING.get(key, f'model.{key}')}={before.get(key)} (here {now.get(key)})"
            for key in sorted(set(before) | set(now))
            if key not in ("_target_", "activation", "init") and before.get(key) != now.get(key)
        ]
        if differ:
            hint = f"the run that trained them had {', '.join(differ)}: give those"
    return ConfigError(
        f"the weights of {ckpt_path} do not fit the model this config builds; {hint} "
        "(a new model trains from nothing: leave ckpt_path out)"
    )


def cluster_once(parts, epoch: int) -> None:
    """Embed and cluster the model as it is, once, the way a monitoring update does."""
    import torch

    from deepcluster.clustering.schedule import Update

    parts.module.set_targets(torch.empty(0, 0), torch.empty(0, 0))  # cluster as a monitor does
    update = Update(
        "epoch", manifold=parts.manifold is not None, starts_refinement=False, phase="pretrain"
    )
    entry = {"epoch": epoch, "phase": "cluster_only", "loss": math.nan, "acc": None, "nmi": None}
    parts.callback.record_update(Standalone(parts.datamodule, epoch), parts.module, update, entry)


def drop_unused_folder(out_dir: Path, finished: Path) -> None:
    """`ckpt_path=last` on a finished command trains nothing, but Hydra has already made
    this run's timestamped folder: left there, it is an empty run beside the finished one,
    and the newest folder a user opens. A folder given with hydra.run.dir that is the
    finished run is kept."""
    if out_dir.resolve() != finished.resolve():
        drop_hydra_only_folder(out_dir)


def drop_hydra_only_folder(out_dir: Path) -> None:
    """Remove a run folder that holds only what Hydra wrote before our code ran (.hydra/ and
    the log)."""
    hydra_only = out_dir.is_dir() and all(
        p.name == ".hydra" or p.suffix == ".log" for p in out_dir.iterdir()
    )
    if hydra_only:
        shutil.rmtree(out_dir, ignore_errors=True)


def drop_refused_run_folder(cfg: DictConfig) -> None:
    """A refused command: the error is printed, and the timestamped folder Hydra made for it
    under outputs/ would only be the newest, empty, run a user opens. So it goes, with its
    outputs/<command>/ parent when that was its only run. A folder the user named
    (hydra.run.dir, output_dir) is theirs and stays; with output_dir, Hydra's own folder
    under outputs/ (its log and .hydra/ only) goes all the same."""
    hc = hydra_config()
    if hc is None:
        return
    if any(o.startswith("hydra.run.dir=") for o in hc.overrides.hydra):
        return
    out_dir = Path(hc.runtime.output_dir).resolve()
    if cfg.get("output_dir") and Path(cfg.output_dir).resolve() == out_dir:
        return
    drop_hydra_only_folder(out_dir)
    parent = out_dir.parent
    if not out_dir.exists() and parent.parent.name == "outputs" and not any(parent.iterdir()):
        parent.rmdir()


def check_sizes(cfg: DictConfig, n: int) -> None:
    """What the number of images N allows: k (or k_search.min) below N, and UMAP more images
    than its dimensions + 1."""
    require(n >= 3, f"{cfg.dataset.name} has {n} images: clustering needs at least 3")
    if cfg.k != "auto":
        # the label-free scores (silhouette) need a cluster with two images or more
        require(
            cfg.k < n,
            f"k={cfg.k} is not smaller than the number of images ({n}); use k <= {n - 1}",
        )
    else:  # checked now, not after the first epoch trained
        require(
            cfg.k_search.min < n,
            f"k_search.min={cfg.k_search.min} is not smaller than the number of images "
            f"({n}); use k_search.min <= {n - 1}",
        )
        warn_about_k_search(cfg.k_search, n)
    dims = cfg.manifold.get("n_components")  # UMAP fails on too few points, after an epoch
    if cfg.manifold.name != "none" and dims is not None:
        dims = int(dims)
        if n <= dims + 1:
            fix = f"manifold.n_components <= {n - 2}, or manifold=none"
            auto = cfg.k == "auto"
            # the default takes the dimensions from k: offer k where a legal one is left
            if OmegaConf.is_interpolation(cfg.manifold, "n_components") and n - 2 >= (
                cfg.k_search.min if auto else 2
            ):
                fix = f"{'k_search.max' if auto else 'k'} <= {n - 2}, or {fix}"
            raise ConfigError(
                f"manifold={cfg.manifold.name} embeds the codes in manifold.n_components={dims} "
                f"dimensions, which needs more than {dims + 1} images; {cfg.dataset.name} has "
                f"{n}: use {fix}"
            )


def warn_about_k_search(k_search: DictConfig, n: int) -> None:
    """k=auto tries every k in [k_search.min, k_search.max], one clustering each, at every
    update: a max above what N allows is cut (say so), and many candidates are slow."""
    top = min(k_search.max, n - 1)
    if k_search.max > top:
        log.warning(
            "k_search.max=%d: %d images allow k up to %d; the search stops there",
            k_search.max,
            n,
            top,
        )
    if top - k_search.min + 1 > 30:
        log.warning(
            "k=auto will cluster the codes %d times (k = %d … %d) at every update; a narrower "
            "k_search.max makes each update faster",
            top - k_search.min + 1,
            k_search.min,
            top,
        )


def warn_if_refinement_never_runs(cfg: DictConfig) -> None:
    """refine=dekm/dec with trainer.max_epochs <= pretrain_epochs trains no refinement epoch:
    legal (a pretraining cut short), but easy to do by mistake (the digits default
    pretrains 20 epochs, so trainer.max_epochs=10 only reconstructs)."""
    epochs = cfg.trainer.max_epochs
    if cfg.refine.enabled and epochs is not None and 0 < epochs <= cfg.pretrain_epochs:
        log.warning(
            "refine=%s will not train: trainer.max_epochs=%d is not above pretrain_epochs=%d "
            "(the refinement starts after the pretraining); raise trainer.max_epochs or lower "
            "pretrain_epochs to refine",
            cfg.refine.method,
            epochs,
            cfg.pretrain_epochs,
        )


def warn_about_cluster_sizes(labels, k: int, paths: list[str] | None = None) -> None:
    """Fewer non-empty clusters than k: the codes barely vary (identical images, a model
    that collapsed), and the scores of such a partition mean little or are undefined. A
    cluster of one or two images among hundreds: most likely outliers (a blank, tiny or odd
    image) that took a cluster of their own, which k=auto's scores tend to reward."""
    import numpy as np

    sizes = np.bincount(np.asarray(labels), minlength=k)
    used = int((sizes > 0).sum())
    if used < k:
        log.warning(
            "the final clustering has %d non-empty cluster(s) of k=%d: the codes barely vary "
            "(identical or blank images, or a collapsed model); its scores are undefined or "
            "meaningless. Check the images (figures/cluster_samples.png) or lower k",
            used,
            k,
        )
    tiny = [c for c in range(len(sizes)) if 0 < sizes[c] <= 2]
    if tiny and len(labels) >= 100:
        members = np.flatnonzero(np.isin(labels, tiny))[:4].tolist()
        named = ", ".join(paths[i] for i in members) if paths else f"images {members}"
        log.warning(
            "%d cluster(s) hold only one or two images (%s): outliers with a cluster of their "
            "own; look at them, remove them, or lower k",
            len(tiny),
            named,
        )


# what a run writes into its folder (outputs.py, ModelCheckpoint): an earlier run's set aside
RUN_OUTPUTS = (
    "metrics.json",
    "run_info.json",
    "predictions.csv",
    "codes.npy",
    "clusterer.joblib",
    "config.yaml",
    "weights.ckpt",
    "figures",
    "checkpoints",
)


def set_aside_earlier_run(
    out_dir: Path, resuming_from: str | None, cluster_only: bool = False
) -> str | None:
    """A folder given again (a fixed `hydra.run.dir`) may hold an earlier run's outputs. Left
    there, its metrics.json would say "finished" of this run if this one stopped early, its
    last.ckpt is what `ckpt_path=last` and a NaN's "last good checkpoint" would name before
    this run wrote one, and deepcluster-predict would mix its clusterer with this run's
    config and weights. They all move to `previous/`, or to the first free `previous.N/`
    when earlier runs are there already: nothing is deleted, and a checkpoint given from
    one of them stays where it is. A run continuing its own checkpoint keeps its outputs;
    its metrics.json alone moves. Clustering its own checkpoint only (`cluster_only`: another
    reading of the trained run, e.g. clusterer=ward) moves every output but the checkpoints.
    Returns the checkpoint to continue (its new path if it was one of the outputs moved,
    e.g. a cluster-only run's weights.ckpt)."""
    own = resume_mod.own_checkpoint(resuming_from, out_dir)
    if not own:
        names = RUN_OUTPUTS
    elif cluster_only:
        names = tuple(name for name in RUN_OUTPUTS if name != "checkpoints")
    else:
        names = ("metrics.json",)
    earlier = [out_dir / name for name in names if (out_dir / name).exists()]
    if not earlier:
        return resuming_from
    previous, n = out_dir / "previous", 1
    while previous.exists():
        n += 1
        previous = out_dir / f"previous.{n}"
    moved_ckpt = resuming_from
    if resuming_from is not None and not own:
        source = Path(resuming_from).resolve()
        for path in earlier:
            if source.is_relative_to(path.resolve()):
                moved_ckpt = str(previous / source.relative_to(out_dir.resolve()))
    previous.mkdir()
    for path in earlier:
        path.replace(previous / path.name)
    log.info(
        "%s held an earlier run's %s: moved to %s/",
        out_dir,
        ", ".join(path.name for path in earlier),
        previous.name,
    )
    return moved_ckpt


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train, cluster, write the run's outputs; returns the final metrics."""
    started = time.perf_counter()
    for saved in hydra_saved_configs():  # a secret on the command line: not on disk
        scrub_saved_config(saved)
    # before Lightning's imports (seconds on a small CPU): a refused command answers at once
    validate(cfg)
    check_wandb_options(cfg)
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from deepcluster import outputs
    from deepcluster.models import NonFiniteLossError

    outputs.life_before(started)  # marks this process's first run (a sweep runs several)
    quiet_libraries()
    out_dir = output_dir(cfg)
    check_writable(out_dir, cfg)
    plan = _resume_plan(cfg, out_dir)
    if plan.finished is not None:
        metrics = json.loads((plan.finished / "metrics.json").read_text())
        print(
            f"deepcluster: this command already finished in {plan.finished} "
            f"({metrics.get('stop_reason')}); nothing to resume. Its result: "
            f"{summary(metrics)}. Run it without ckpt_path=last to train a new run."
        )
        drop_unused_folder(out_dir, plan.finished)
        return metrics
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    parts = build_parts(cfg)
    parts.callback.run_dir = str(out_dir.resolve())
    ckpt_dir = out_dir / "checkpoints"
    # every epoch end: the newest epochNNN-stepN.ckpt, and last.ckpt linking to it (what resume
    # loads). No "=" in the name (Lightning's default epoch=N-step=N.ckpt): Hydra's override
    # grammar rejects an unquoted ckpt_path=…/epoch=5-step=80.ckpt
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="epoch{epoch:03d}-step{step}",
        auto_insert_metric_name=False,
        save_last="link",
        save_top_k=1,
    )
    # the data loads before the loggers exist: a refused dataset (missing files, too few
    # images for k) leaves no csv/ folder and no failed W&B run behind its error
    dm = parts.datamodule.prepare()
    n = dm.num_samples
    check_sizes(cfg, n)
    if plan.ckpt is not None:
        check_checkpoint_fits(cfg, plan.ckpt, parts.module, dm.identity())
    trainer = build_trainer(cfg, [parts.callback, checkpoint], out_dir)
    loggers = make_loggers(cfg, out_dir)
    trainer.loggers = loggers
    succeeded, restore_sigterm = False, lambda: None
    try:
        reading = cfg.trainer.max_epochs == 0  # cluster_only: another reading of the weights
        source = outputs.source_finished_at(out_dir, plan.ckpt, reading)  # before it moves
        if trainer.is_global_zero:  # only now: a run refused above leaves the earlier one be
            plan.ckpt = set_aside_earlier_run(out_dir, plan.ckpt, reading)
            # what predict rebuilds; a secret's value is not kept
            OmegaConf.save(OmegaConf.create(public_config(cfg)), out_dir / "config.yaml")
        warn_if_refinement_never_runs(cfg)  # here: after the errors that would stop the run
        log.info(
            "%s %s on %s (%d images), k=%s → %s",
            "clustering with the weights of" if cfg.trainer.max_epochs == 0 else "training",
            type(parts.module.model).__name__,
            cfg.dataset.name,
            n,
            cfg.k,
            out_dir,
        )
        if cfg.trainer.max_epochs == 0:
            restore_sigterm = stop_on_sigterm(
                "while clustering the trained model: no results. The same command clusters it again"
            )
            cluster_only(cfg, plan.ckpt, parts, out_dir)
        else:
            try:  # weights_only: resuming never unpickles arbitrary code from a checkpoint
                # (weights that do not fit were refused by check_checkpoint_fits above)
                trainer.fit(parts.module, datamodule=dm, ckpt_path=plan.ckpt, weights_only=True)
            except SIGTERMException:
                # Lightning's SIGTERM handler raises a SystemExit without a code: status 0,
                # and a reproduction or a scheduler would take the run for finished
                raise RunStopped(
                    f"stopped by SIGTERM at epoch {trainer.current_epoch}, step "
                    f"{trainer.global_step}: no results. {last_checkpoint(ckpt_dir)}"
                ) from None
            except NonFiniteLossError as exc:
                raise NonFiniteLossError(f"{exc} {last_checkpoint(ckpt_dir)}") from None
            restore_sigterm = stop_on_sigterm(
                f"after training, before its results were written. {last_checkpoint(ckpt_dir)}"
            )
            if parts.callback.last_codes is None and trainer.is_global_zero:
                # the checkpoint had reached max_epochs already (its run stopped after the
                # last checkpoint, before its results): nothing trains; its last update,
                # redone, gives the results back
                log.info("checkpoint %s had finished training: its results only", plan.ckpt)
                last = max(trainer.current_epoch - 1, 0)  # the last epoch trained
                parts.callback.redo_last_update(Standalone(dm, last), parts.module)
                keep_weights(plan.ckpt, ckpt_dir)
        callback = parts.callback
        if not any("k" in h for h in callback.history):
            raise TrainingError("training ended before the first clustering: no results")
        if not trainer.is_global_zero:
            return dict(callback.history[-1])
        warn_about_cluster_sizes(callback.labels, int(callback.k_now), dm.paths)
        baseline = (
            outputs.pixel_baseline(dm.images, dm.labels, int(callback.k_now), cfg.seed)
            if cfg.baseline
            else None
        )
        metrics = outputs.final_metrics(cfg, callback, dm, baseline)
        outputs.write_results(out_dir, callback, dm)
        figures = outputs.write_figures(cfg, out_dir, metrics, callback, dm)
        log_final(loggers, metrics, figures)
        outputs.write_run_info(
            out_dir, callback, started, plan.ckpt, dm.skipped, cfg.model, source, reading
        )
        outputs.write_metrics(out_dir, metrics)  # last: a run with metrics.json is complete
        succeeded = True
    finally:
        restore_sigterm()
        finish_wandb(loggers, exit_code=0 if succeeded else 1)
    print(
        f"deepcluster: {summary(metrics)} ({cfg.dataset.name}, k={metrics['k']}, "
        f"{metrics['epochs']} epochs, {time.perf_counter() - started:.0f} s) → {out_dir}",
        flush=True,
    )
    return metrics


def summary(metrics: dict[str, Any]) -> str:
    """The one line a user reads: scores, and what k-means on the pixels got."""
    parts = []
    if metrics.get("acc") is not None:
        parts.append(
            f"ACC {metrics['acc']:.4f}  NMI {metrics['nmi']:.4f}  ARI {metrics['ari']:.4f}"
            f"  purity {metrics['purity']:.4f}"
        )
    if metrics.get("silhouette") is not None:
        parts.append(f"silhouette {metrics['silhouette']:.3f}")
    base = metrics.get("baseline") or {}
    if base.get("acc") is not None:
        parts.append(f"(k-means on pixels: ACC {base['acc']:.4f})")
    return "  ".join(parts) or "no score (fewer than 2 clusters found)"
