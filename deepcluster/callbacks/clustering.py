"""ClusteringCallback: embed → cluster → (rotate, targets) → hand to the module → log.

Thin glue over deepcluster.clustering. Under DDP every rank embeds, rank 0 clusters and the
result is broadcast, so all ranks train on the same labels and targets.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from deepcluster.clustering import ClusterResult, clustering_scores, label_change_fraction
from deepcluster.clustering.base import cluster_means
from deepcluster.clustering.rotation import rotate_and_target

log = logging.getLogger(__name__)

Clusterer = Callable[[np.ndarray, int], ClusterResult]
Manifold = Callable[[np.ndarray], np.ndarray]  # codes (N, d) → embedding (N, m)


class ClusteringCallback(Callback):
    """Clusters the codes at every epoch end (and every `update_interval` refinement steps).

    Args:
        clusterer: callable (z (N, d), k) → ClusterResult.
        k: number of clusters.
        refine: run method A's refinement after `pretrain_epochs` reconstruction epochs.
        update_interval: during refinement, also recluster every this many steps (0: epochs only).
        tol: stop refining once fewer than this fraction of labels change between updates.
        manifold: optional callable z (N, d) → (N, m) (e.g. UMAP) applied before the clusterer.
            It is slow, so it runs only at the epoch ends where (epoch + 1) is a multiple of
            `manifold_every_n_epochs`, at the last epoch (max_epochs - 1, or when training
            stops early, convergence included) and at the update that starts refinement. All
            other updates (other epochs, the `update_interval` steps) cluster the raw codes;
            each history entry says which (`manifold`: true/false). Refinement always works in
            the code space: its centres are the code means of the clusters found.
        manifold_every_n_epochs: see `manifold`.
    """

    def __init__(
        self,
        clusterer: Clusterer,
        k: int,
        refine: bool = False,
        pretrain_epochs: int = 0,
        update_interval: int = 0,
        tol: float = 0.005,
        embed_batch_size: int = 8192,
        manifold: Manifold | None = None,
        manifold_every_n_epochs: int = 1,
    ) -> None:
        super().__init__()
        if k < 2:
            raise ValueError(f"k={k} must be >= 2")
        if pretrain_epochs < 0:
            raise ValueError(f"pretrain_epochs={pretrain_epochs} must be >= 0")
        if update_interval < 0:
            raise ValueError(f"refine.update_interval={update_interval} must be >= 0")
        if not 0 <= tol < 1:
            raise ValueError(f"refine.tol={tol} must be in [0, 1)")
        if manifold_every_n_epochs < 1:
            raise ValueError(f"manifold.every_n_epochs={manifold_every_n_epochs} must be >= 1")
        self.clusterer, self.k = clusterer, k
        self.manifold, self.manifold_every_n_epochs = manifold, manifold_every_n_epochs
        self.refine, self.pretrain_epochs = refine, pretrain_epochs
        self.update_interval, self.tol = update_interval, tol
        self.embed_batch_size = embed_batch_size
        # state carried through checkpoints
        self.history: list[dict[str, Any]] = []  # per epoch: scores, loss, changed (no timings)
        self.timings: list[dict[str, float]] = []  # per epoch: seconds spent embedding, clustering
        self._fit_started = time.perf_counter()
        self.labels: np.ndarray | None = None
        self.stop_reason = "max_epochs"
        self.n_updates = 0
        self.rank_checks = 0  # updates at which all DDP ranks were checked to agree
        # transient
        self.last_codes: np.ndarray | None = None  # (N, d) codes of the last update
        self.last_result: ClusterResult | None = None  # its clustering (extra: e.g. linkage)
        self.last_embedding: np.ndarray | None = None  # (N, m) last manifold output (rank 0)
        self._loss_sum = 0.0
        self._loss_count = 0

    # --- the one clustering update ---------------------------------------------------
    def _manifold_due(self, trainer: L.Trainer, pl_module: L.LightningModule, where: str) -> bool:
        """where: "start" (before training), "step" (within an epoch) or "epoch" (its end)."""
        if self.manifold is None or where == "step":
            return False
        if where == "start":
            return True  # the only update at train start is the one that starts refinement
        epoch = trainer.current_epoch
        max_epochs = trainer.max_epochs
        last = max_epochs is not None and max_epochs > 0 and epoch >= max_epochs - 1
        starts_refinement = (
            self.refine and not pl_module.refining and epoch + 1 >= self.pretrain_epochs
        )
        return (
            (epoch + 1) % self.manifold_every_n_epochs == 0
            or last
            or trainer.should_stop
            or starts_refinement
        )

    def _cluster(
        self, trainer: L.Trainer, z: np.ndarray, use_manifold: bool
    ) -> tuple[ClusterResult, float]:
        """Rank 0 clusters z (N, d), through the manifold if asked; broadcast to all ranks."""
        out = None
        if trainer.is_global_zero:
            if use_manifold:
                t0 = time.perf_counter()
                embedding = self.manifold(z)  # (N, m)
                manifold_s = time.perf_counter() - t0
                res = self.clusterer(embedding, self.k)
                # the clusterer's centres live in the manifold; refinement needs code-space ones
                res = ClusterResult(
                    labels=res.labels,
                    centers=cluster_means(z, res.labels, self.k),
                    seconds=res.seconds,
                    extra={**res.extra, "manifold_centers": res.centers},
                )
                self.last_embedding = embedding
                out = (res, manifold_s)
            else:
                out = (self.clusterer(z, self.k), 0.0)
        return trainer.strategy.broadcast(out, src=0)

    def _update(
        self, trainer: L.Trainer, pl_module: L.LightningModule, where: str = "epoch"
    ) -> dict[str, Any]:
        dm = trainer.datamodule
        t0 = time.perf_counter()
        z = pl_module.embed(dm.images, self.embed_batch_size).cpu().numpy()  # (N, d)
        t_embed = time.perf_counter() - t0
        use_manifold = self._manifold_due(trainer, pl_module, where)
        result, manifold_s = self._cluster(trainer, z, use_manifold)
        changed = (
            label_change_fraction(self.labels, result.labels)
            if self.labels is not None
            else math.nan
        )
        was_refining = pl_module.refining
        refine_now = self.refine and trainer.current_epoch + 1 >= self.pretrain_epochs
        converged = refine_now and was_refining and changed < self.tol
        if converged and where == "epoch" and self.manifold is not None and not use_manifold:
            # the run ends here: its final labels come through the manifold. (A step update
            # needs no redo: the epoch end that follows a stop is a manifold update.)
            use_manifold = True
            result, manifold_s = self._cluster(trainer, z, use_manifold)
        self.labels = result.labels
        self.last_codes = z
        self.last_result = result
        self.n_updates += 1
        if refine_now:
            if trainer.is_global_zero:
                targets = rotate_and_target(z, result.labels, result.centers)
            else:
                targets = None
            pl_module.set_targets(*trainer.strategy.broadcast(targets, src=0))
            if converged:
                self.stop_reason = (
                    f"converged: {changed:.2%} of labels changed (< tol {self.tol:.2%}) "
                    f"at epoch {trainer.current_epoch}, step {trainer.global_step}"
                )
                trainer.should_stop = True
        if trainer.world_size > 1:
            self._check_ranks_agree(trainer, pl_module)
        return {
            "changed": changed,
            "embed_s": t_embed,
            "manifold_s": manifold_s,
            "cluster_s": result.seconds,
            "manifold": use_manifold,
            "phase": "refine" if was_refining else "pretrain",
        }

    def _check_ranks_agree(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Every rank must now hold the same labels and targets: compare digests, fail loudly."""
        h = hashlib.blake2b(digest_size=7)
        h.update(np.ascontiguousarray(self.labels).tobytes())
        if pl_module.refining:
            h.update(pl_module.targets.detach().cpu().numpy().tobytes())
            h.update(pl_module.rotation.detach().cpu().numpy().tobytes())
        mine = torch.tensor([int.from_bytes(h.digest(), "big")], device=pl_module.device)
        every = trainer.strategy.all_gather(mine).reshape(-1)  # (world_size,)
        if not bool((every == every[0]).all()):
            raise RuntimeError(
                f"ranks disagree on the clustering at epoch {trainer.current_epoch}, step "
                f"{trainer.global_step}: digests {every.tolist()}. Please report this."
            )
        self.rank_checks += 1

    # --- hooks -------------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_started = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Refinement due but no targets yet (pretrain_epochs=0, or a run continued from a
        # reconstruction-only checkpoint): start from the current codes.
        if self.refine and trainer.current_epoch >= self.pretrain_epochs and not pl_module.refining:
            info = self._update(trainer, pl_module, where="start")
            log.info("initial clustering for refinement (%.1f s)", info["cluster_s"])

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._loss_sum, self._loss_count = 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        n = len(batch[1])
        self._loss_sum = self._loss_sum + loss.detach() * n  # stays on device: no sync
        self._loss_count += n
        if (
            pl_module.refining
            and self.update_interval
            and (batch_idx + 1) % self.update_interval == 0
            and batch_idx + 1 < trainer.num_training_batches  # the epoch end updates anyway
        ):
            info = self._update(trainer, pl_module, where="step")
            log.info(
                "epoch %d step %d: %.2f%% labels changed", trainer.current_epoch,
                trainer.global_step, 100 * info["changed"],
            )  # fmt: skip

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        info = self._update(trainer, pl_module)
        scores = clustering_scores(trainer.datamodule.labels, self.labels)
        # the epoch's mean training loss over all ranks
        totals = torch.tensor([float(self._loss_sum), float(self._loss_count)], dtype=torch.float64)
        totals = trainer.strategy.reduce(totals.to(pl_module.device), reduce_op="sum")
        loss = float(totals[0] / max(float(totals[1]), 1.0))
        entry = {"epoch": trainer.current_epoch, "phase": info["phase"], "loss": loss, **scores,
                 "changed": info["changed"], "manifold": info["manifold"]}  # fmt: skip
        self.history.append(entry)
        timing = {key: info[key] for key in ("embed_s", "manifold_s", "cluster_s")}
        # seconds since this process's fit began (a resumed run restarts the clock)
        timing["elapsed_s"] = time.perf_counter() - self._fit_started
        self.timings.append({"epoch": trainer.current_epoch, **timing})
        # identical on every rank (broadcast labels): log once, no sync needed
        logged = {f"cluster/{key}": float(scores[key]) for key in scores}
        if not math.isnan(info["changed"]):
            logged["cluster/changed"] = float(info["changed"])
        pl_module.log_dict(logged, rank_zero_only=True)
        if not trainer.is_global_zero:
            return
        log.info(
            "epoch %d [%s] loss %.5f | acc %.4f nmi %.4f ari %.4f purity %.4f | "
            "changed %s | embed %.1fs %scluster %.1fs",
            entry["epoch"], info["phase"], loss, scores["acc"], scores["nmi"], scores["ari"],
            scores["purity"],
            "-" if math.isnan(info["changed"]) else f"{info['changed']:.2%}",
            info["embed_s"], f"manifold {info['manifold_s']:.1f}s " if info["manifold"] else "",
            info["cluster_s"],
        )  # fmt: skip

    # --- checkpointed state ------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "timings": self.timings,
            "labels": None if self.labels is None else torch.from_numpy(self.labels),
            "stop_reason": self.stop_reason,
            "n_updates": self.n_updates,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self.timings = list(state_dict.get("timings", []))
        labels = state_dict.get("labels")
        self.labels = None if labels is None else labels.numpy()
        self.stop_reason = state_dict.get("stop_reason", "max_epochs")
        self.n_updates = state_dict.get("n_updates", 0)
