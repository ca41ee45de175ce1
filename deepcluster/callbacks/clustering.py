"""ClusteringCallback: embed → cluster → (rotate, targets) → hand to the module → log.

Thin glue: *when* to cluster and through which pipeline is `ClusteringSchedule`'s call
(deepcluster/clustering/schedule.py); *how* is the clusterer's, the manifold's and
`rotate_and_target`'s (method A) or DEC's (clustering/dec.py; after refinement starts, a DEC
update assigns each code to the module's learned centres instead of reclustering). Under DDP
every rank embeds, rank 0 clusters and the result (or the error) is broadcast
(callbacks/ranks.py), so all ranks train on the same labels and targets, or all stop.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from deepcluster.callbacks.ranks import check_ranks_agree, on_rank_zero
from deepcluster.clustering import ClusterResult, clustering_scores
from deepcluster.clustering.base import (
    NearestCentroid,
    code_centers,
    with_restarts,
    within_cluster_sum_of_squares,
)
from deepcluster.clustering.dec import assign_all
from deepcluster.clustering.k_select import KChoice, choose_k
from deepcluster.clustering.label_free import label_free_scores
from deepcluster.clustering.rotation import code_rms, rotate_and_target
from deepcluster.clustering.schedule import ClusteringSchedule, Update
from deepcluster.errors import ConfigError
from deepcluster.models.module import NonFiniteLossError

log = logging.getLogger(__name__)

Clusterer = Callable[[np.ndarray, int], ClusterResult]
Manifold = Callable[[np.ndarray], np.ndarray]  # codes (N, d) → embedding (N, m)


def dec_centres_differ(k: int, centres: int) -> ConfigError:
    """A DEC checkpoint inside refinement continued with another k (checked before the run
    folder changes where k is given; here too for k=auto)."""
    return ConfigError(
        f"k={k}, but the checkpoint is inside DEC's refinement with {centres} centres: "
        f"resume with k={centres}, or start k={k} from a checkpoint of the pretraining"
    )


def images_differ(before: dict[str, Any] | None, now: dict[str, Any] | None) -> str | None:
    """How this data differs from the images a checkpoint's per-image state was made for
    (ImageDataModule.identity of each), or None where they are the same or either is unknown."""
    if before is None or now is None or all(before.get(key) == now.get(key) for key in before):
        return None
    if before["images"] != now["images"]:
        return f"{before['images']} images, this data {now['images']}"
    return f"{now['images']} images both, but other files or another order"


def refinement_on_other_images(what: str) -> ConfigError:
    """A checkpoint inside refinement resumed on other images (checked before the run folder
    changes; here too for a Trainer driven without deepcluster.run)."""
    return ConfigError(
        f"the checkpoint is inside a refinement made on other images ({what}): its targets are "
        "rows in those images' order. Resume with the data it was trained on (a folder as it "
        "was then), or start a new refinement from a checkpoint of the pretraining"
    )


class ClusteringCallback(Callback):
    """Args:
    clusterer: callable (z (N, d), k) → ClusterResult.
    k: number of clusters, or "auto": chosen without labels (k_search) at each update
        before refinement, then fixed when refinement starts.
    schedule: when to cluster and how (see ClusteringSchedule for the one rule).
    manifold: optional callable z (N, d) → (N, m) (e.g. UMAP) applied before the clusterer
        where the schedule says so. Refinement works in the code space: its centres are the
        code means of the clusters found.
    first_n_init: restarts of the clusterer at the update that starts refinement (the
        reference: 100 k-means initialisations, the lowest inertia wins; label-free).
    k_search: {"min", "max", "criterion"} for k="auto".
    target_scale: "free" (the reference: targets in the codes' current scale) or "fixed":
        every refinement update rescales its targets to the codes' RMS at the update that
        started refinement. With augmentation the free scale grows update after update (an
        augmented image's code regresses toward the mean, so matching the clean image's
        target raises the encoder's gain, and the next targets ask for more; RESULTS.md);
        the partition is scale-free, so fixing the scale changes only that feedback.
        Method A's only.
    refine_method: "dekm" (rotation targets from a reclustering at every update) or "dec"
        (the first update clusters and hands its centres to the module; every later one
        sharpens the soft assignments to the module's centres into DEC's target P).
    dec_alpha: DEC's Student-t degrees of freedom.
    """

    def __init__(
        self,
        clusterer: Clusterer,
        k: int | str,
        schedule: ClusteringSchedule,
        manifold: Manifold | None = None,
        first_n_init: int = 1,
        k_search: dict[str, Any] | None = None,
        seed: int = 0,
        target_scale: str = "free",
        refine_method: str = "dekm",
        dec_alpha: float = 1.0,
    ) -> None:
        super().__init__()
        self.clusterer, self.k, self.schedule, self.manifold = clusterer, k, schedule, manifold
        self.first_n_init, self.k_search = first_n_init, dict(k_search or {})
        self.seed = seed
        if target_scale not in ("free", "fixed"):
            raise ValueError(f"refine.target_scale={target_scale!r} must be free or fixed")
        self.target_scale = target_scale
        if refine_method not in ("dekm", "dec"):
            raise ValueError(f"refine.method={refine_method!r} must be dekm or dec")
        self.refine_method, self.dec_alpha = refine_method, dec_alpha
        # state carried through checkpoints
        self.target_rms: float | None = None  # codes' RMS when refinement started (fixed scale)
        self.history: list[dict[str, Any]] = []  # per epoch: loss, scores, changed
        self.timings: list[dict[str, float]] = []  # per clustered epoch: seconds per stage
        self.labels: np.ndarray | None = None
        self.k_now: int | None = None if k == "auto" else int(k)
        self.rank_checks = 0  # updates at which all DDP ranks were checked to agree
        # transient (rank 0)
        self.k_choice: KChoice | None = None
        self.last_codes: np.ndarray | None = None  # (N, d) codes of the last update
        self.last_result: ClusterResult | None = None  # its clustering (extra: e.g. linkage)
        self.last_embedding: np.ndarray | None = None  # (N, m) last manifold output
        self.last_manifold_model: Any = None  # the fitted manifold of the last manifold update
        self.fit_started = time.perf_counter()
        # fit seconds of earlier processes, per run folder, up to their last checkpoint: a run
        # resumed in its own folder adds them up; one continuing another folder's checkpoint
        # (a shared pretraining) keeps that folder's apart
        self.run_dir: str | None = None  # this process's run folder (set by run.py)
        self.earlier_wall_s: dict[str, float] = {}
        # the images this run's per-image state belongs to (ImageDataModule.identity), and the
        # checkpoint's
        self.data_identity: dict[str, Any] | None = None
        self.restored_identity: dict[str, Any] | None = None

    @property
    def stop_reason(self) -> str:
        return self.schedule.stop_reason

    # --- one clustering update ---------------------------------------------------------
    def _cluster_rank0(
        self, z: np.ndarray, update: Update, refining: bool, centers: torch.Tensor | None = None
    ) -> dict[str, Any]:
        if centers is not None:
            return self._dec_assign(z, centers, update)
        t0 = time.perf_counter()
        space = self.manifold(z) if update.manifold else z  # (N, m) or (N, d)
        manifold_s = time.perf_counter() - t0 if update.manifold else 0.0
        if self.k == "auto" and not refining:
            self.k_choice = choose_k(
                space,
                self.k_search.get("min", 2),
                self.k_search.get("max", 20),
                self.k_search.get("criterion", "silhouette"),
                self.seed,
            )
            self.k_now = self.k_choice.k
        clusterer = with_restarts(
            self.clusterer, self.first_n_init if update.starts_refinement else 1
        )
        res = clusterer(space, self.k_now)
        if update.manifold:  # the clusterer's centres live in the manifold: keep code-space ones
            res.extra["manifold_centers"] = res.centers
            res.centers = code_centers(z, space, res.labels, res.centers)
            empty = int((np.bincount(res.labels, minlength=self.k_now) == 0).sum())
            if empty:
                log.warning(
                    "%d of %d clusters found in the manifold are empty: each takes the code "
                    "nearest its manifold centre as its centre",
                    empty,
                    self.k_now,
                )
            self.last_embedding = space
            self.last_manifold_model = getattr(self.manifold, "model", None)
        targets = None
        if self.refine_method == "dec" and update.starts_refinement:
            centers = torch.as_tensor(res.centers, dtype=torch.float32)
            _, p = assign_all(torch.from_numpy(z), centers, self.dec_alpha)
            targets = {"centers": centers, "targets": p}
        elif self.refine_method == "dekm" and (
            update.starts_refinement or (update.phase == "refine" and update.refreshes)
        ):
            v, t = rotate_and_target(z, res.labels, res.centers)
            if self.target_scale == "fixed":
                rms = code_rms(z)
                if update.starts_refinement or self.target_rms is None:
                    self.target_rms = rms
                t = t * (self.target_rms / max(rms, 1e-12))
            targets = {"rotation": v, "targets": t}
        # step and start updates only steer refinement; the history (the scores) is per epoch
        scores = (
            {}
            if update.where != "epoch"
            else label_free_scores(space, res.labels, res.objective, seed=self.seed)
        )
        return {
            "result": res,
            "targets": targets,
            "scores": scores,
            "k": self.k_now,
            "manifold_s": manifold_s,
        }

    def _dec_assign(self, z: np.ndarray, centers: torch.Tensor, update: Update) -> dict[str, Any]:
        """A DEC refinement update: labels = the nearest learned centre, new targets P."""
        t0 = time.perf_counter()
        q, p = assign_all(torch.from_numpy(z), centers, self.dec_alpha)  # (N, k) each
        labels = q.argmax(1).numpy().astype(np.int64)
        c = centers.numpy().astype(np.float64)
        res = ClusterResult(
            labels,
            c,
            objective=within_cluster_sum_of_squares(z, labels, len(c)),
            predictor=NearestCentroid(c),  # the kernel falls with distance: same assignment
        )
        res.seconds = time.perf_counter() - t0
        scores = (
            {}
            if update.where != "epoch"
            else label_free_scores(z, labels, res.objective, seed=self.seed)
        )
        return {
            "result": res,
            "targets": {"targets": p} if update.refreshes else None,
            "scores": scores,
            "k": self.k_now,
            "manifold_s": 0.0,
        }

    def _update(self, trainer: L.Trainer, pl_module: L.LightningModule, update: Update) -> dict:
        t0 = time.perf_counter()
        images = trainer.datamodule.train_images  # the device-resident copy when on a GPU
        z = pl_module.embed(images).cpu().numpy()  # (N, d), the module's embed_batch_size
        embed_s = time.perf_counter() - t0
        bad = ~np.isfinite(z).all(1)
        if bad.any():  # a step update can come before the loss is next checked: say why here
            raise NonFiniteLossError(
                f"the codes became NaN or infinite at epoch {trainer.current_epoch}, step "
                f"{trainer.global_step} ({int(bad.sum())} of {len(z)} images): the weights "
                "diverged. Lower optim.lr or check the data."
            )
        dec_step = (
            self.refine_method == "dec"
            and update.phase == "refine"
            and not update.starts_refinement
            and not update.manifold  # (the schedule sends no refinement update through it)
            and pl_module.centers is not None
        )
        centers = pl_module.centers.detach().float().cpu() if dec_step else None
        out = on_rank_zero(
            trainer,
            lambda: self._cluster_rank0(z, update, pl_module.refining, centers),
            "clustering",
        )
        res: ClusterResult = out["result"]
        changed, stop = self.schedule.record(update, res.labels)
        self.labels, self.k_now, self.last_codes, self.last_result = res.labels, out["k"], z, res
        if out["targets"] is not None:
            if "centers" in out["targets"]:
                pl_module.set_centers(out["targets"]["centers"])
            pl_module.set_targets(
                out["targets"].get("rotation", torch.empty(0, 0)), out["targets"]["targets"]
            )
        if stop and not trainer.should_stop:
            trainer.should_stop = True
            log.info("refinement stops: %s", self.schedule.stop_reason)
        if trainer.world_size > 1:
            check_ranks_agree(trainer, self.labels, pl_module)
            self.rank_checks += 1
        return {**out, "changed": changed, "embed_s": embed_s, "cluster_s": res.seconds}

    # --- hooks -------------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_started = time.perf_counter()
        datamodule = getattr(trainer, "datamodule", None)
        if hasattr(datamodule, "identity"):
            self.data_identity = datamodule.identity()

    def check_same_images(self, pl_module: L.LightningModule) -> None:
        """A checkpoint's refinement targets and last labels are rows in its images' order.
        Resumed on other images (a folder with files added, removed or renamed since; another
        dataset) they would index past the end or, worse, belong to other images. Inside a
        refinement that is refused; before it, the weights go on and the old labels are
        dropped (the next update is not compared with them)."""
        before = self.restored_identity
        if before is None:  # a checkpoint older than the identity: its rows' count only
            rows = pl_module.targets if pl_module.refining else self.labels
            before = None if rows is None else {"images": len(rows)}
        what = images_differ(before, self.data_identity)
        if what is None:
            return
        if pl_module.refining:
            raise refinement_on_other_images(what)
        log.warning(
            "the checkpoint was trained on other images (%s): its weights go on; its last "
            "clustering is not compared with this data's",
            what,
        )
        self.labels = None
        self.schedule.previous = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check_same_images(pl_module)
        if pl_module.refining and self.schedule.restored_stop():
            # the checkpoint's refinement had stopped (its process ended before its results):
            # refining on would not be the run it was
            log.info("the checkpoint's refinement had stopped (%s)", self.schedule.stop_reason)
            self.redo_last_update(trainer, pl_module)
            trainer.should_stop = True
            return
        if pl_module.refining and self.schedule.stop_reason != "max_epochs":
            # its stop no longer holds (a raised cap, a lower tol, more patience): it trains on
            log.info(
                "the checkpoint's refinement had stopped (%s); under this run's settings it "
                "goes on",
                self.schedule.stop_reason,
            )
            self.schedule.stop_reason = "max_epochs"
        centers = pl_module.centers  # DEC's, once its refinement has started
        if self.refine_method == "dec" and centers is not None and len(centers) != self.k_now:
            raise dec_centres_differ(self.k_now, len(centers))  # k=auto: known only now
        update = self.schedule.at_train_start(trainer.current_epoch, pl_module.refining)
        if update is not None:
            info = self._update(trainer, pl_module, update)
            log.info("initial clustering for refinement (%.1f s)", info["cluster_s"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        update = self.schedule.after_step(
            batch_idx, trainer.num_training_batches, pl_module.refining
        )
        if update is not None:
            info = self._update(trainer, pl_module, update)
            changed = info["changed"]  # NaN: nothing comparable before (e.g. a UMAP start)
            log.info(
                "epoch %d step %d: %s",
                trainer.current_epoch,
                trainer.global_step,
                "first update of the codes themselves (nothing to compare with)"
                if math.isnan(changed)
                else f"{100 * changed:.2f}% labels changed",
            )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        loss = pl_module.epoch_mean_loss()  # every rank: it syncs
        epoch = trainer.current_epoch
        was_refining = pl_module.refining
        update = self.schedule.at_epoch_end(
            epoch, trainer.max_epochs, trainer.should_stop, was_refining
        )
        # every entry names epoch, phase, loss, acc and nmi (DESIGN.md §3); acc and nmi stay
        # null where nothing was scored: an epoch the cadence skips, or data without labels
        entry: dict[str, Any] = {
            "epoch": epoch,
            "phase": "refine" if was_refining else "pretrain",
            "loss": loss,
            "acc": None,
            "nmi": None,
        }
        if update is None:  # a monitoring epoch skipped by the cadence: the loss only
            self.history.append(entry)
            if trainer.is_global_zero:
                log.info("epoch %d [%s] loss %.5f", epoch, entry["phase"], loss)
            return
        info = self.record_update(trainer, pl_module, update, entry)
        pl_module.log_dict(
            {
                f"cluster/{key}": float(value)
                for key, value in entry.items()
                # manifold: 1 where the scores were taken in the manifold's space
                if key not in ("epoch", "phase", "loss")
                and value is not None
                and not math.isnan(value)
            },
            rank_zero_only=True,
        )
        if trainer.is_global_zero:
            self._log_line(entry, info, update)

    def redo_last_update(self, trainer, pl_module) -> None:
        """For a checkpoint whose training had ended before its process wrote the results:
        its history is complete, and its last update, redone the same way (pipeline, phase)
        on the same weights, gives its final labels and codes back. Nothing is recorded; no
        targets change (a refinement update that only scores)."""
        last = next((h for h in reversed(self.history) if "k" in h), {})
        phase = last.get("phase", "refine" if pl_module.refining else "pretrain")
        if phase not in ("pretrain", "refine"):  # cluster_only: read as a pretraining is
            phase = "pretrain"
        update = Update("epoch", bool(last.get("manifold")), False, phase, refreshes=False)
        # the update that started refinement (trainer.max_epochs = pretrain_epochs) ran the
        # clusterer with first_n_init restarts: so does its redo (it sets no targets)
        started = phase == "pretrain" and self.schedule.starts_refinement_at(last.get("epoch", -1))
        clusterer = self.clusterer
        if started:
            self.clusterer = with_restarts(clusterer, self.first_n_init)
        try:
            self._update(trainer, pl_module, update)
        finally:
            self.clusterer = clusterer

    def record_update(self, trainer, pl_module, update: Update, entry: dict[str, Any]) -> dict:
        """Run `update` and append its scores to `entry` and to the history."""
        info = self._update(trainer, pl_module, update)
        labels_true = trainer.datamodule.labels
        if labels_true is not None:
            entry.update(clustering_scores(labels_true, self.labels))
        entry.update(info["scores"])
        entry.update({"k": info["k"], "changed": info["changed"], "manifold": update.manifold})
        self.history.append(entry)
        self.timings.append(
            {
                "epoch": entry["epoch"],
                "embed_s": info["embed_s"],
                "manifold_s": info["manifold_s"],
                "cluster_s": info["cluster_s"],
                # seconds since this process's fit began (a resume restarts it)
                "elapsed_s": time.perf_counter() - self.fit_started,
            }
        )
        return info

    @staticmethod
    def _log_line(entry: dict[str, Any], info: dict[str, Any], update: Update) -> None:
        supervised = (
            f"acc {entry['acc']:.4f} nmi {entry['nmi']:.4f} ari {entry['ari']:.4f} "
            f"purity {entry['purity']:.4f} | "
            if entry.get("acc") is not None
            else ""
        )
        changed = entry["changed"]
        log.info(
            "epoch %d [%s] loss %.5f | %ssilhouette %.3f | k=%d changed %s | embed %.1fs "
            "%scluster %.1fs",
            entry["epoch"],
            entry["phase"],
            entry["loss"],
            supervised,
            entry["silhouette"],
            entry["k"],
            ("-" if math.isnan(changed) else f"{changed:.2%}")
            + ("" if update.refreshes else " (scored only: since the last update)"),
            info["embed_s"],
            f"manifold {info['manifold_s']:.1f}s " if entry["manifold"] else "",
            info["cluster_s"],
        )

    # --- checkpointed state ------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "timings": self.timings,
            "labels": None if self.labels is None else torch.from_numpy(self.labels),
            "k_now": self.k_now,
            # k=auto: the choice and every candidate's score, for metrics.json and the
            # k_search figure of a resumed run
            "k_choice": None if self.k_choice is None else dataclasses.asdict(self.k_choice),
            "schedule": self.schedule.state_dict(),
            "target_rms": self.target_rms,
            "wall_s_by_folder": self.wall_s_by_folder(),
            "data": self.data_identity,
        }

    def wall_s_by_folder(self) -> dict[str, float]:
        """Fit seconds per run folder: earlier processes' and this one's so far."""
        walls = dict(self.earlier_wall_s)
        if self.run_dir is not None:
            now = time.perf_counter() - self.fit_started
            walls[self.run_dir] = walls.get(self.run_dir, 0.0) + now
        return walls

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # entries of checkpoints written before every entry named acc and nmi get the keys
        # (appended; an entry that has them keeps its order: a resumed run's metrics.json is
        # byte for byte the uninterrupted run's)
        self.history = [
            {**h, "acc": h.get("acc"), "nmi": h.get("nmi")} for h in state_dict.get("history", [])
        ]
        self.timings = list(state_dict.get("timings", []))
        self.target_rms = state_dict.get("target_rms")
        self.earlier_wall_s = dict(state_dict.get("wall_s_by_folder", {}))  # none before 0.3
        self.restored_identity = state_dict.get("data")  # none in older checkpoints
        labels = state_dict.get("labels")
        self.labels = None if labels is None else labels.numpy()
        if "schedule" in state_dict:
            self.schedule.load_state_dict(state_dict["schedule"])
        restored_k = state_dict.get("k_now")
        if self.k == "auto":  # the k this run chose carries on
            self.k_now = restored_k if restored_k is not None else self.k_now
            if state_dict.get("k_choice") is not None:
                self.k_choice = KChoice(**state_dict["k_choice"])
        elif restored_k is not None and restored_k != self.k_now:
            # a checkpoint clustered with another k (a shared pretraining continued with k=5):
            # the configured k wins, and the old labels are not compared with the new ones
            log.info("checkpoint clustered with k=%s; continuing with k=%s", restored_k, self.k_now)
            self.labels = None
            self.schedule.previous = {}
