"""What a finished run leaves in its folder (README, "Where the results go")."""

from __future__ import annotations

import json
import math
import os
import resource
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from deepcluster.clustering import clustering_scores
from deepcluster.clustering.kmeans import kmeans
from deepcluster.machine import describe
from deepcluster.resume import own_checkpoint, run_folder

BASELINE_SAMPLE = 10_000
BASELINE_SIDE = 32  # larger images are averaged down to this side first (memory, time)


def jsonable(value: Any) -> Any:
    """numpy scalars → Python; NaN and ±inf → None (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def pixel_baseline(images, labels: np.ndarray | None, k: int, seed: int) -> dict[str, Any]:
    """k-means on the raw input pixels (same k and seed; a fixed sample of at most 10 000):
    what clustering gets without the autoencoder."""
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    n = len(images)
    idx = np.sort(rng.choice(n, size=min(n, BASELINE_SAMPLE), replace=False))
    side = images.shape[-1]
    parts = []
    for chunk in np.array_split(idx, max(1, len(idx) // 1000)):  # no float copy of them all
        x = images[chunk].float().div_(255.0)
        if side > BASELINE_SIDE:  # large images: their area means, ≤ 32 × 32 per channel
            x = F.adaptive_avg_pool2d(x, BASELINE_SIDE)
        parts.append(x.reshape(len(chunk), -1).cpu().numpy())
    res = kmeans(np.concatenate(parts), k, n_init=10, seed=seed)
    out: dict[str, Any] = {"method": "k-means on pixels", "n": len(idx), "k": k}
    if side > BASELINE_SIDE:
        out["pixels"] = f"{side}×{side} averaged to {BASELINE_SIDE}×{BASELINE_SIDE}"
    if labels is not None:
        scores = clustering_scores(labels[idx], res.labels)
        out.update(acc=scores["acc"], nmi=scores["nmi"])
    return out


def objective_name(cfg: DictConfig, callback, final: dict) -> str | None:
    """What the final `objective` measures: DEC's refinement updates assign to its learned
    centres and score the within-cluster sum of squares, whatever clusterer started it."""
    if final.get("phase") == "refine" and cfg.refine.enabled and cfg.refine.method == "dec":
        return "within_ss"
    return getattr(callback.clusterer, "objective_name", None)


def final_metrics(cfg: DictConfig, callback, datamodule, baseline: dict | None) -> dict[str, Any]:
    final = [h for h in callback.history if "k" in h][-1]
    metrics: dict[str, Any] = {
        key: final.get(key)
        for key in (
            "acc",
            "nmi",
            "ari",
            "purity",
            "silhouette",
            "calinski_harabasz",
            "davies_bouldin",
            "objective",
        )
    }
    metrics.update(
        {
            "k": int(callback.k_now),
            "dataset": cfg.dataset.name,
            "split": cfg.dataset.get("split", "all"),
            "n": int(len(callback.labels)),
            "labelled": datamodule.labels is not None,
            "clusterer": cfg.clusterer.name,
            "objective_name": objective_name(cfg, callback, final),
            "manifold": cfg.manifold.name,
            # where silhouette, Calinski-Harabasz and Davies-Bouldin were computed: the
            # manifold's embedding when the last update went through it, else the codes
            "scores_space": cfg.manifold.name if final.get("manifold") else "codes",
            "activation": cfg.activation.name,
            "model": cfg.model.name,
            "refine": bool(cfg.refine.enabled),
            "refine_method": cfg.refine.method if cfg.refine.enabled else None,
            "augment": OmegaConf.select(cfg, "augment.name", default="none"),
            "seed": int(cfg.seed),
            # the model's epochs (a cluster-only run: its checkpoint's, not its one entry)
            "epochs": callback.history[-1]["epoch"] + 1 if callback.history else 0,
            "stop_reason": callback.stop_reason,
            "baseline": baseline,
        }
    )
    if callback.k_choice is not None:
        metrics["k_chosen"] = callback.k_choice.k
        metrics["k_search"] = {
            "criterion": callback.k_choice.criterion,
            "scores": callback.k_choice.scores,
        }
    metrics["history"] = callback.history
    return jsonable(metrics)


def write_metrics(out_dir: Path, metrics: dict) -> None:
    """metrics.json, written last and whole (a temporary file renamed): its presence is what
    says a run finished, to a resume and to the reproduction."""
    tmp = out_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    os.replace(tmp, out_dir / "metrics.json")


def write_results(out_dir: Path, callback, datamodule) -> None:
    """predictions.csv, codes.npy and the fitted clusterer (clusterer.joblib)."""
    import joblib

    labels = callback.labels
    columns = {"index": np.arange(len(labels))}
    if datamodule.paths is not None:
        columns["path"] = np.asarray(datamodule.paths, dtype=object)
    columns["cluster"] = labels
    if datamodule.labels is not None:
        columns["label"] = datamodule.labels
        names = getattr(datamodule, "class_names", None)  # class folders, or label values
        if names is not None:
            columns["class"] = np.asarray(names, dtype=object)[datamodule.labels]
    import pandas as pd

    pd.DataFrame(columns).to_csv(out_dir / "predictions.csv", index=False)
    np.save(out_dir / "codes.npy", callback.last_codes.astype(np.float32))
    result = callback.last_result
    joblib.dump(
        {
            "k": int(callback.k_now),
            "centers": result.centers,  # (k, d) code-space means
            "predictor": result.predictor,  # assigns codes (or manifold coordinates) to clusters
            "manifold": callback.last_manifold_model
            if callback.history[-1].get("manifold")
            else None,
        },
        out_dir / "clusterer.joblib",
    )


def write_figures(cfg: DictConfig, out_dir: Path, metrics: dict, callback, datamodule) -> dict:
    from deepcluster import plots

    if not cfg.plots or callback.last_codes is None:
        return {}
    fig_dir, labels, y = out_dir / "figures", callback.labels, datamodule.labels
    shown = ("ACC", metrics["acc"]) if y is not None else ("silhouette", metrics["silhouette"])
    # silhouette is None when every image fell into one cluster (e.g. a collapsed refinement)
    score = f"{shown[0]} {shown[1]:.3f}" if shown[1] is not None else f"{shown[0]} –"
    title = f"{cfg.dataset.name} k={metrics['k']} {cfg.activation.name}: {score}"
    figures = {
        "cluster_samples": plots.cluster_samples(
            datamodule.images,
            callback.last_codes,
            labels,
            callback.last_result.centers,
            fig_dir / "cluster_samples.png",
            title,
        ),
        "latent_map": plots.latent_map(
            callback.last_codes, labels, fig_dir / "latent_map.png", title, classes=y
        ),
        "scores_curve": plots.scores_curve(callback.history, fig_dir / "scores_curve.png", title),
    }
    if y is not None:
        names = getattr(datamodule, "class_names", None)
        figures["confusion"] = plots.confusion(
            y, labels, fig_dir / "confusion.png", title, class_names=names
        )
    if "linkage" in callback.last_result.extra:
        figures["dendrogram"] = plots.dendrogram(
            callback.last_result.extra["linkage"], metrics["k"], fig_dir / "dendrogram.png", title
        )
    if callback.k_choice is not None:
        figures["k_search"] = plots.k_search(callback.k_choice, fig_dir / "k_search.png", title)
    return figures


def command_line() -> str | None:
    """The command as typed (Hydra runs only): `deepcluster <its overrides>`."""
    from deepcluster.tracking import hydra_config, scrub_override

    hc = hydra_config()
    if hc is None:
        return None
    extra = [o for o in hc.overrides.hydra if not o.startswith("hydra.mode=")]
    task = [scrub_override(o) for o in hc.overrides.task]  # a secret's value is not kept
    return shlex.join(["deepcluster", *task, *extra])  # read back by shlex.split


def process_age_at(moment: float) -> float:
    """Seconds this process had lived at perf_counter() == moment (Linux; else 0)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        age_now = uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, age_now - (time.perf_counter() - moment))


_first_run_started: float | None = None  # perf_counter() at this process's first run


def life_before(started: float) -> float:
    """Seconds of this process before a run started at `started` that are the run's own: the
    interpreter and imports for the first run of a process; none for a later job of a sweep
    (Hydra's default launcher runs every job in one process, one after another)."""
    global _first_run_started
    if _first_run_started is None:
        _first_run_started = started
    return process_age_at(started) if started == _first_run_started else 0.0


def _used_cuda() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _run_info(run_dir: Path) -> dict:
    """A run folder's run_info.json, or {} (none, unreadable)."""
    try:
        info = json.loads((run_dir / "run_info.json").read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def continues_own_run(out_dir: Path, ckpt: str | None, cluster_only: bool) -> bool:
    """Does this process train on from the folder's own checkpoint (one run over several
    processes)? Clustering it only is another reading: a run of its own."""
    return not cluster_only and own_checkpoint(ckpt, out_dir)


def source_finished_at(out_dir: Path, ckpt: str | None, cluster_only: bool) -> str | None:
    """When the run a checkpoint came from finished (its run_info.json's finished_at; a folder
    trained again keeps its earlier runs in previous*/). Training on from its own checkpoint, a
    run keeps what an earlier process of it recorded. Read before set_aside_earlier_run moves
    this folder's outputs away: a reading of the folder's own checkpoint or weights.ckpt
    comes from the run those outputs belong to."""
    if ckpt is None:
        return None
    if continues_own_run(out_dir, ckpt, cluster_only):
        return _run_info(out_dir).get("source_finished_at")
    return _run_info(run_folder(ckpt)).get("finished_at")


def write_run_info(
    out_dir: Path,
    callback,
    started: float,
    resumed_from: str | None,
    skipped: list[str],
    model: DictConfig | None = None,
    source: str | None = None,
    cluster_only: bool = False,
) -> None:
    """What varies between identical runs (timings, memory) lives apart from metrics.json.
    source: source_finished_at(…), read before the folder's earlier outputs moved."""
    before = life_before(started)
    wall_s = time.perf_counter() - started + before
    own = continues_own_run(out_dir, resumed_from, cluster_only)
    earlier = callback.earlier_wall_s.get(callback.run_dir) if own else 0.0
    info = {
        "wall_s": round(wall_s, 2),  # this process
        # with the earlier processes of a run resumed in its own folder (their fit time up to
        # their last checkpoint); None: resumed from a checkpoint that did not record it
        "wall_s_total": None if earlier is None else round(wall_s + earlier, 2),
        # process start → training start (interpreter, imports, data, model): with the
        # timings' elapsed_s it gives the time from the command to each clustering
        "startup_s": round(callback.fit_started - started + before, 2),
        # the process's peak: in a sweep run by Hydra's default launcher (one process), the
        # highest of this job and the jobs before it
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "resumed_from": resumed_from,
        "source_finished_at": source,
        "skipped_files": len(skipped),
        "skipped": skipped[:100],
        "timings": jsonable(callback.timings),
        "ddp_rank_agreement_checks": callback.rank_checks,
        "machine": describe(ran_on_gpu=_used_cuda()),
        "command": command_line(),
        # the network its checkpoint holds: a reproduction tells a run of an experiment file
        # since changed (another width) from one of the file as it is now
        "model_config": None if model is None else OmegaConf.to_container(model, resolve=True),
        # when this process ended (UTC): tells which of a retrained pretraining's records a
        # run that continued it was built on
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    }
    (out_dir / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")
