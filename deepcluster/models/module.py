"""The LightningModule (the *system*): holds a plain autoencoder and trains it.

Two phases: reconstruction (MSE) while no targets are set, then method A's refinement
MSE(f(x)·V, T[idx]) once the ClusteringCallback has handed over V and T. V and T are buffers,
so checkpoints carry them.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepcluster.errors import DeepClusterError


class NonFiniteLossError(DeepClusterError):
    """The loss became NaN or infinite: training stops, the last good checkpoint stays."""


class DeepClusterModule(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        recon_weight: float = 0.0,
        embed_batch_size: int = 8192,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"optim.lr={lr} must be > 0")
        if recon_weight < 0:
            raise ValueError(f"refine.recon_weight={recon_weight} must be >= 0")
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.lr = lr
        self.recon_weight = recon_weight
        self.embed_batch_size = embed_batch_size
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.register_buffer("rotation", torch.empty(0, 0))  # V: (d, d)
        self.register_buffer("targets", torch.empty(0, 0))  # T: (N, d)

    # --- refinement state --------------------------------------------------------------
    @property
    def refining(self) -> bool:
        return self.targets.numel() > 0

    def set_targets(self, rotation: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor):
        """rotation: (d, d), targets: (N, d); stored as float32 buffers on the module's device."""
        self.rotation = torch.as_tensor(rotation, dtype=torch.float32, device=self.device)
        self.targets = torch.as_tensor(targets, dtype=torch.float32, device=self.device)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Buffers start empty; give them the saved shapes so load_state_dict accepts them.
        state = checkpoint.get("state_dict", {})
        for name in ("rotation", "targets"):
            if name in state:
                setattr(self, name, torch.empty_like(state[name], device=self.device))

    # --- training ----------------------------------------------------------------------
    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, idx = batch  # (B, C, H, W) float, (B,) long
        x = self._prep(x)
        if self.refining:
            z = self.model.encode(x)  # (B, d)
            loss = F.mse_loss(z @ self.rotation, self.targets[idx])
            if self.recon_weight > 0:
                loss = loss + self.recon_weight * F.mse_loss(self.model.decode(z), x)
        else:
            _, recon = self.model(x)
            loss = F.mse_loss(recon, x)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the training loss became {loss.item()} at epoch {self.current_epoch}, "
                f"step {self.global_step} (batch {batch_idx}). Lower optim.lr or check the data."
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=len(x))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.lr)

    # --- inference ---------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Codes of all images. images: (N, C, H, W) uint8 (any device) → (N, d) float32."""
        batch_size = batch_size or self.embed_batch_size
        was_training = self.training
        self.eval()
        chunks = []
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(self.device, non_blocking=True)
            x = self._prep(x.float().div_(255.0))
            chunks.append(self.model.encode(x).float())
        self.train(was_training)
        return torch.cat(chunks)
