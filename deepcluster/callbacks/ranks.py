"""What the clustering callback needs of DDP: one rank computes, every rank gets the result
(or the error), and every rank is checked to hold the same labels and targets."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from deepcluster.errors import ClusteringError, DeepClusterError

log = logging.getLogger(__name__)


def on_rank_zero(trainer: Any, compute: Callable[[], Any], what: str) -> Any:
    """compute() on rank 0, its result broadcast to every rank. If it raises, every rank raises
    (a ClusteringError with its message) instead of waiting in the broadcast until timeout.
    What the data or the settings caused (a ValueError, our own errors) is that short message;
    anything else is a bug: in one process it is raised as it is, traceback and all, and under
    DDP rank 0 logs its traceback before every rank stops."""
    out, cause = None, None
    if trainer.is_global_zero:
        try:
            out = ("ok", compute())
        except (ValueError, DeepClusterError) as exc:
            out, cause = ("error", f"{type(exc).__name__}: {exc}"), exc
        except Exception as exc:
            if trainer.world_size == 1:
                raise
            log.exception("%s failed on rank 0", what)
            out, cause = ("error", f"{type(exc).__name__}: {exc} (traceback above)"), exc
    status, value = trainer.strategy.broadcast(out, src=0)
    if status == "error":
        raise ClusteringError(
            f"{what} failed at epoch {trainer.current_epoch}, step {trainer.global_step}: {value}"
        ) from cause
    return value


def check_ranks_agree(trainer: Any, labels: np.ndarray, pl_module: Any) -> None:
    """Compare a digest of the labels (and targets, rotation, centres) over ranks; fail loudly."""
    h = hashlib.blake2b(digest_size=7)
    h.update(np.ascontiguousarray(labels).tobytes())
    if pl_module.refining:
        h.update(pl_module.targets.detach().cpu().numpy().tobytes())
        h.update(pl_module.rotation.detach().cpu().numpy().tobytes())
    if getattr(pl_module, "centers", None) is not None:  # DEC's learned centres
        h.update(pl_module.centers.detach().cpu().numpy().tobytes())
    mine = torch.tensor([int.from_bytes(h.digest(), "big")], device=pl_module.device)
    every = trainer.strategy.all_gather(mine).reshape(-1)  # (world_size,)
    if not bool((every == every[0]).all()):
        raise RuntimeError(
            f"ranks disagree on the clustering at epoch {trainer.current_epoch}, step "
            f"{trainer.global_step}: digests {every.tolist()}. Please report this."
        )
