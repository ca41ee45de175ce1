"""ClusteringCallback: embed → cluster → (rotate, targets) → hand to the module → log.

Thin glue over deepcluster.clustering. Under DDP every rank embeds, rank 0 clusters and the
result is broadcast, so all ranks train on the same labels and targets.
"""

from __future__ import annotations

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
from deepcluster.clustering.rotation import rotate_and_target

log = logging.getLogger(__name__)

Clusterer = Callable[[np.ndarray, int], ClusterResult]


class ClusteringCallback(Callback):
    """Clusters the codes at every epoch end (and every `update_interval` refinement steps).

    Args:
        clusterer: callable (z (N, d), k) → ClusterResult.
        k: number of clusters.
        refine: run method A's refinement after `pretrain_epochs` reconstruction epochs.
        update_interval: during refinement, also recluster every this many steps (0: epochs only).
        tol: stop refining once fewer than this fraction of labels change between updates.
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
        self.clusterer, self.k = clusterer, k
        self.refine, self.pretrain_epochs = refine, pretrain_epochs
        self.update_interval, self.tol = update_interval, tol
        self.embed_batch_size = embed_batch_size
        # state carried through checkpoints
        self.history: list[dict[str, Any]] = []
        self.labels: np.ndarray | None = None
        self.stop_reason = "max_epochs"
        self.n_updates = 0
        # transient
        self.last_codes: np.ndarray | None = None  # (N, d) codes of the last update
        self.last_result: ClusterResult | None = None  # its clustering (extra: e.g. linkage)
        self._loss_sum = 0.0
        self._loss_count = 0

    # --- the one clustering update ---------------------------------------------------
    def _update(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        dm = trainer.datamodule
        t0 = time.perf_counter()
        z = pl_module.embed(dm.images, self.embed_batch_size).cpu().numpy()  # (N, d)
        t_embed = time.perf_counter() - t0
        result = self.clusterer(z, self.k) if trainer.is_global_zero else None
        result = trainer.strategy.broadcast(result, src=0)
        changed = (
            label_change_fraction(self.labels, result.labels)
            if self.labels is not None
            else math.nan
        )
        was_refining = pl_module.refining
        self.labels = result.labels
        self.last_codes = z
        self.last_result = result
        self.n_updates += 1
        if self.refine and trainer.current_epoch + 1 >= self.pretrain_epochs:
            if trainer.is_global_zero:
                targets = rotate_and_target(z, result.labels, result.centers)
            else:
                targets = None
            pl_module.set_targets(*trainer.strategy.broadcast(targets, src=0))
            if was_refining and changed < self.tol:
                self.stop_reason = (
                    f"converged: {changed:.2%} of labels changed (< tol {self.tol:.2%}) "
                    f"at epoch {trainer.current_epoch}, step {trainer.global_step}"
                )
                trainer.should_stop = True
        return {
            "changed": changed,
            "embed_s": t_embed,
            "cluster_s": result.seconds,
            "phase": "refine" if was_refining else "pretrain",
        }

    # --- hooks -------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # pretrain_epochs=0: refinement starts at once, from the initial codes.
        if self.refine and self.pretrain_epochs == 0 and not pl_module.refining:
            info = self._update(trainer, pl_module)
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
            info = self._update(trainer, pl_module)
            log.info(
                "epoch %d step %d: %.2f%% labels changed", trainer.current_epoch,
                trainer.global_step, 100 * info["changed"],
            )  # fmt: skip

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        info = self._update(trainer, pl_module)
        scores = clustering_scores(trainer.datamodule.labels, self.labels)
        loss = float(self._loss_sum) / max(self._loss_count, 1)
        entry = {"epoch": trainer.current_epoch, "loss": loss, **scores, **info}
        self.history.append(entry)
        pl_module.log_dict({f"cluster/{key}": float(scores[key]) for key in scores})
        if not math.isnan(info["changed"]):
            pl_module.log("cluster/changed", float(info["changed"]))
        log.info(
            "epoch %d [%s] loss %.5f | acc %.4f nmi %.4f ari %.4f purity %.4f | "
            "changed %s | embed %.1fs cluster %.1fs",
            entry["epoch"], info["phase"], loss, scores["acc"], scores["nmi"], scores["ari"],
            scores["purity"],
            "-" if math.isnan(info["changed"]) else f"{info['changed']:.2%}",
            info["embed_s"], info["cluster_s"],
        )  # fmt: skip

    # --- checkpointed state ------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "labels": None if self.labels is None else torch.from_numpy(self.labels),
            "stop_reason": self.stop_reason,
            "n_updates": self.n_updates,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        labels = state_dict.get("labels")
        self.labels = None if labels is None else labels.numpy()
        self.stop_reason = state_dict.get("stop_reason", "max_epochs")
        self.n_updates = state_dict.get("n_updates", 0)
