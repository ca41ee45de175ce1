"""When to cluster, through which pipeline, and when refinement has converged.

Plain Python: the Lightning callback asks it at three moments (train start, after a step, at
an epoch end) and hands it every new labelling. One rule, in full:

- Before refinement the clustering only *monitors* the codes. It runs at the end of every
  epoch whose number (epoch + 1) is a multiple of `cluster_every_n_epochs`, at the last epoch
  and when training stops early. With a manifold (UMAP) the monitoring updates go through it
  at the last epoch and when (epoch + 1) is a multiple of `manifold_every_n_epochs` (0: at the
  last epoch only).
- The update that starts refinement (the end of epoch `pretrain_epochs - 1`, or the start of
  training when a run begins or resumes past it without targets) always clusters, through the
  manifold when there is one: the refinement starts from the best partition we can make.
- Every refinement update after that clusters the codes directly, so within refinement all
  labellings come from one pipeline. When they come is `cadence`: `epoch` (method A's default)
  updates every `update_interval` steps of an epoch and at every epoch end, the count
  restarting each epoch; `global` (DEC's) updates every `update_interval` refinement steps
  counted across epochs, as both papers' reference loops count, and an epoch end between two
  such updates only *scores* the partition for the history: it refreshes no targets, tests no
  convergence and is not what the next update is compared with. (`update_interval` 0: every
  epoch end, either way.)
- `changed` is the fraction of labels that moved since the previous update *of the same
  pipeline* (after Hungarian alignment; the update that starts refinement forgets the older
  monitoring labels); refinement has converged when, between two
  refinement updates, it is below `tol`. The test needs a full window: under `epoch` an update
  at an epoch end that comes fewer than `update_interval` steps after the step update before
  it (the epoch's tail: 1 step when an epoch has 41 batches and the interval is 40) refreshes
  the targets but tests neither `tol` nor `patience`, since a few steps move few labels
  whether or not the refinement has settled. (An epoch shorter than the interval has no step
  updates; its epoch-end windows are whole epochs and are tested.) Refinement also stops
  after `max_iterations` steps (0: no cap; counted at updates, so it may overshoot by up to
  `update_interval` - 1 steps), and, with `patience` > 0, when `changed` has not set a new
  low for `patience` refinement updates in a row: with augmented inputs the labels keep
  moving by about 1 % an update and seldom meet `tol`, and a refinement that drifts apart
  shows it as rising churn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from deepcluster.clustering.metrics import label_change_fraction


@dataclass(frozen=True)
class Update:
    """One clustering update: where it happens and how it clusters."""

    where: str  # "start" | "step" | "epoch"
    manifold: bool  # through the manifold (else the codes directly)
    starts_refinement: bool  # its labels and centres become the first targets
    phase: str  # "pretrain" | "refine": the phase of the training that led to it
    refreshes: bool = True  # in refinement: new targets and a convergence test (else scores only)

    @property
    def pipeline(self) -> str:
        return "manifold" if self.manifold else "codes"


@dataclass
class ClusteringSchedule:
    refine: bool = False
    pretrain_epochs: int = 0
    update_interval: int = 0  # steps between refinement updates (0: epoch ends only)
    cadence: str = "epoch"  # "epoch": the step count restarts each epoch; "global": it does not
    tol: float = 0.005
    max_iterations: int = 0  # refinement steps before stopping (0: no cap)
    patience: int = 0  # refinement updates without a new lowest `changed` before stopping (0: off)
    cluster_every_n_epochs: int = 1
    manifold: bool = False  # a manifold (UMAP) sits between the codes and the clusterer
    manifold_every_n_epochs: int = 0  # monitoring through it every n epochs (0: the last only)
    # state (checkpointed through state_dict)
    previous: dict[str, np.ndarray] = field(default_factory=dict)  # pipeline → last labels
    refine_steps: int = 0
    lowest_changed: float = math.inf  # the lowest `changed` of this refinement so far
    since_lowest: int = 0  # refinement updates since it was set
    stop_reason: str = "max_epochs"
    stop_changed: float = math.nan  # the `changed` that met tol (NaN: unknown or not converged)
    last_refresh_step: int | None = None  # refine_steps at the last refreshing update
    epoch_steps: int = 0  # batches in an epoch (seen by after_step)
    stopped: bool = False  # a refinement update decided to stop (not checkpointed)

    def __post_init__(self) -> None:
        for name in (
            "pretrain_epochs",
            "update_interval",
            "max_iterations",
            "patience",
            "manifold_every_n_epochs",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.cluster_every_n_epochs < 1:
            raise ValueError(f"cluster_every_n_epochs={self.cluster_every_n_epochs} must be >= 1")
        if not 0 <= self.tol < 1:
            raise ValueError(f"tol={self.tol} must be in [0, 1)")
        if self.cadence not in ("epoch", "global"):
            raise ValueError(f"cadence={self.cadence!r} must be 'epoch' or 'global'")

    @property
    def _global(self) -> bool:
        return self.cadence == "global" and self.update_interval > 0

    # --- when ------------------------------------------------------------------------
    def _manifold_at(self, epoch: int, last: bool) -> bool:
        every = self.manifold_every_n_epochs
        return self.manifold and (last or (every > 0 and (epoch + 1) % every == 0))

    def at_train_start(self, epoch: int, refining: bool) -> Update | None:
        """Refinement is due but has no targets yet (pretrain_epochs=0, or a resumed run)."""
        if self.refine and not refining and epoch >= self.pretrain_epochs:
            return Update("start", self.manifold, True, "pretrain")
        return None

    def after_step(self, batch_idx: int, num_batches: int, refining: bool) -> Update | None:
        """After a training step: the refinement's every-`update_interval`-steps update."""
        if not refining:
            return None
        self.refine_steps += 1
        self.epoch_steps = num_batches
        every = self.update_interval
        last_batch = batch_idx + 1 >= num_batches  # the epoch end updates anyway
        count = self.refine_steps if self._global else batch_idx + 1
        if every and count % every == 0 and not last_batch:
            return Update("step", False, False, "refine")
        return None

    def at_epoch_end(
        self, epoch: int, max_epochs: int | None, stopping: bool, refining: bool
    ) -> Update | None:
        """At the end of `epoch`; None when this epoch is not clustered (monitoring cadence)."""
        last = stopping or (max_epochs is not None and max_epochs > 0 and epoch >= max_epochs - 1)
        if refining:
            due = not self._global or self.refine_steps % self.update_interval == 0
            return Update("epoch", False, False, "refine", refreshes=due)
        if self.starts_refinement_at(epoch):
            return Update("epoch", self.manifold, True, "pretrain")
        if last or (epoch + 1) % self.cluster_every_n_epochs == 0:
            return Update("epoch", self._manifold_at(epoch, last), False, "pretrain")
        return None

    def starts_refinement_at(self, epoch: int) -> bool:
        """Does the end of pretraining epoch `epoch` start refinement?"""
        return self.refine and epoch + 1 >= self.pretrain_epochs

    @property
    def cap_reached(self) -> bool:
        return bool(self.max_iterations) and self.refine_steps >= self.max_iterations

    # --- what happened ---------------------------------------------------------------
    def record(self, update: Update, labels: np.ndarray) -> tuple[float, bool]:
        """Take a new labelling; returns (changed, should stop)."""
        before = self.previous.get(update.pipeline)
        changed = math.nan if before is None else label_change_fraction(before, labels)
        if update.phase == "refine" and not update.refreshes:  # scored only: since the last update
            if self.stopped or self.restored_stop():  # the reason that stopped it stands
                return self._changed_at_stop(changed), True
            self.stopped = self._cap_stop()
            return changed, self.stopped
        if update.starts_refinement:  # monitoring labels of the other pipeline are stale now
            self.previous.clear()
        self.previous[update.pipeline] = np.asarray(labels)
        window = self._window()
        if update.phase == "refine" or update.starts_refinement:
            self.last_refresh_step = self.refine_steps
        if update.phase != "refine":
            return changed, False
        if self.stopped:  # the epoch-end update after a stop mid-epoch: the first reason stands
            return self._changed_at_stop(changed), True
        if window is not None and window < min(self.update_interval, self.epoch_steps):
            self.stopped = self._cap_stop()  # an epoch's tail: new targets, no test
            return changed, self.stopped
        self.stopped = self._should_stop(changed)
        return changed, self.stopped

    def _changed_at_stop(self, changed: float) -> float:
        """What an update after the stop reports as changed: the change that met `tol` (a
        reclustering of the same codes after it says 0 %, which is not what stopped it)."""
        met = self.stop_reason.startswith("converged") and not math.isnan(self.stop_changed)
        return self.stop_changed if met else changed

    def _window(self) -> int | None:
        """Refinement steps since the last refreshing update (None: unknown, as after a
        checkpoint written before this was kept)."""
        if self.last_refresh_step is None:
            return None
        return self.refine_steps - self.last_refresh_step

    def _should_stop(self, changed: float) -> bool:
        if changed < self.tol:  # NaN compares False: the first refinement update never stops
            self.stop_changed = changed
            self.stop_reason = f"converged: {changed:.2%} of labels changed (< tol {self.tol:.2%})"
            return True
        return self._cap_stop() or self._out_of_patience(changed)

    def _cap_stop(self) -> bool:
        if self.cap_reached:
            self.stop_reason = f"max_iterations: {self.refine_steps} refinement steps"
            return True
        return False

    def _out_of_patience(self, changed: float) -> bool:
        if math.isnan(changed):
            return False
        if changed < self.lowest_changed:
            self.lowest_changed, self.since_lowest = changed, 0
            return False
        self.since_lowest += 1
        if self.patience and self.since_lowest >= self.patience:
            self.stop_reason = (
                f"patience: no new lowest label change in {self.patience} updates "
                f"(lowest {self.lowest_changed:.2%}, last {changed:.2%}; tol {self.tol:.2%})"
            )
            return True
        return False

    def restored_stop(self) -> bool:
        """Did the checkpoint's refinement stop by a rule that still holds under this run's
        settings? A step cap unless it was raised, convergence unless tol was lowered under
        the change that met it, patience unless it was raised or turned off (max_epochs is
        Lightning's own). A checkpoint that did not record its change keeps its stop."""
        reason = self.stop_reason
        if reason.startswith("max_iterations"):
            return self.cap_reached
        if reason.startswith("converged"):
            return math.isnan(self.stop_changed) or self.stop_changed < self.tol
        if reason.startswith("patience"):
            return 0 < self.patience <= self.since_lowest
        return False

    # --- checkpointed state ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "previous": {key: torch.from_numpy(v) for key, v in self.previous.items()},
            "refine_steps": self.refine_steps,
            "lowest_changed": self.lowest_changed,
            "since_lowest": self.since_lowest,
            "stop_reason": self.stop_reason,
            "stop_changed": self.stop_changed,
            "last_refresh_step": -1 if self.last_refresh_step is None else self.last_refresh_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.previous = {key: v.numpy() for key, v in state["previous"].items()}
        self.refine_steps = int(state["refine_steps"])
        self.lowest_changed = float(state.get("lowest_changed", math.inf))  # 0.2.0 checkpoints
        self.since_lowest = int(state.get("since_lowest", 0))
        self.stop_reason = str(state["stop_reason"])
        self.stop_changed = float(state.get("stop_changed", math.nan))  # not in older ones
        last = int(state.get("last_refresh_step", -1))  # not in older checkpoints
        self.last_refresh_step = None if last < 0 else last
