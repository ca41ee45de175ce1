"""The LightningModule (the *system*): holds a plain autoencoder and trains it.

Two phases: reconstruction (MSE) while no targets are set, then refinement once the
ClusteringCallback has handed targets over: method A's MSE(f(x)·V, T[idx]) ("dekm"), or DEC's
KL(P[idx] ‖ Q(f(x), U)) with learnable centres U ("dec"; clustering/dec.py). V, T and P are
plain tensors, not buffers (DDP would broadcast buffers at every step; the callback already
gives every rank the same ones); checkpoints carry them under "refinement". U is a parameter,
created when refinement starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from deepcluster.clustering.dec import kl_loss, soft_assign
from deepcluster.errors import ConfigError, TrainingError
from deepcluster.models.base import Autoencoder

Augment = Callable[[torch.Tensor, int], torch.Tensor]  # (x (B, C, H, W), step) → same shape


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite: training stops, the last good checkpoint stays."""


class DeepClusterModule(L.LightningModule):
    """Args:
    model: the autoencoder (see models/base.py for its contract).
    lr: Adam's learning rate; `lr_schedule(steps_per_epoch)` (optional) gives the factor
        per step, step → factor, that scales it.
    recon_weight: weight of a reconstruction term during refinement (the reference: 0,
        the decoder gets no gradient then).
    augment: optional (x, step) → x' applied to training inputs only; the targets stay the
        clean image (reconstruction) or the clean image's target (refinement).
    augment_refinement: whether refinement sees augmented inputs too (DEC-DA's recipe) or
        only the reconstruction epochs do.
    refine_method: "dekm" (method A's rotation targets) or "dec" (DEC's KL to the sharpened
        soft assignments, centres trained with the encoder).
    dec_alpha: degrees of freedom of DEC's Student-t kernel (DEC: 1).
    nan_check_every: steps between checks that the loss is finite (each check waits for the
        device; the epoch end checks too).
    """

    def __init__(
        self,
        model: Autoencoder,
        lr: float = 1e-3,
        recon_weight: float = 0.0,
        embed_batch_size: int = 2048,
        channels_last: bool = False,
        augment: Augment | None = None,
        augment_refinement: bool = True,
        lr_schedule: Callable[[int], Callable[[int], float]] | None = None,
        nan_check_every: int = 50,
        refine_method: str = "dekm",
        dec_alpha: float = 1.0,
    ) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"optim.lr={lr} must be > 0")
        if recon_weight < 0:
            raise ValueError(f"refine.recon_weight={recon_weight} must be >= 0")
        if refine_method not in ("dekm", "dec", "none"):  # none: refine=none, no refinement
            raise ValueError(f"refine.method={refine_method!r} must be dekm or dec")
        if dec_alpha <= 0:
            raise ValueError(f"refine.alpha={dec_alpha} must be > 0")
        self.refine_method, self.dec_alpha = refine_method, dec_alpha
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.lr, self.recon_weight, self.lr_schedule = lr, recon_weight, lr_schedule
        self.embed_batch_size, self.channels_last = embed_batch_size, channels_last
        self.augment, self.nan_check_every = augment, nan_check_every
        self.augment_refinement = augment_refinement
        self.epoch_loss = MeanMetric(nan_strategy="disable")  # synced over ranks on compute()
        self.rotation = torch.empty(0, 0)  # V: (d, d) ("dekm")
        self.targets = torch.empty(0, 0)  # T: (N, d) ("dekm") or P: (N, k) ("dec")
        self.register_parameter("centers", None)  # U: (k, d) ("dec", from refinement's start)
        self._loss_sum = torch.zeros(())
        self._centers_in_ddp = False  # set at fit start

    # --- refinement state --------------------------------------------------------------
    @property
    def refining(self) -> bool:
        return self.targets.numel() > 0

    def set_targets(self, rotation: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor):
        """rotation: (d, d), targets: (N, d); stored as float32 on the module's device."""
        self.rotation = torch.as_tensor(rotation, dtype=torch.float32, device=self.device)
        self.targets = torch.as_tensor(targets, dtype=torch.float32, device=self.device)

    def set_centers(self, centers: np.ndarray | torch.Tensor) -> None:
        """DEC's centres U (k, d), where refinement starts: a new parameter, trained from now
        on with the encoder (added to the running optimizer when there is one)."""
        centers = torch.as_tensor(centers, dtype=torch.float32, device=self.device)
        if self.centers is not None and self.centers.shape == centers.shape:
            with torch.no_grad():  # already a parameter the optimizer trains: new values only
                self.centers.copy_(centers)
            return
        self.centers = torch.nn.Parameter(centers.clone())
        trainer = self._trainer  # None outside a fit
        if trainer is not None and trainer.optimizers:
            optimizer = trainer.optimizers[0]
            optimizer.add_param_group({"params": [self.centers], "initial_lr": self.lr})
            for config in trainer.lr_scheduler_configs:  # the schedule covers the new group
                # too, with the encoder's factor, as a run resumed from here builds it
                scheduler = config.scheduler
                scheduler.base_lrs.append(self.lr)
                if hasattr(scheduler, "lr_lambdas"):
                    scheduler.lr_lambdas.append(scheduler.lr_lambdas[0])
            optimizer.param_groups[-1]["lr"] = optimizer.param_groups[0]["lr"]  # the rate now

    def on_fit_start(self) -> None:  # a restored checkpoint loads before the move to the device
        self.set_targets(self.rotation, self.targets)
        # centres restored from a checkpoint exist before DDP wraps the model: DDP averages
        # their gradient; ones created mid-fit (set_centers) it never sees
        self._centers_in_ddp = self.centers is not None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["refinement"] = {
            "rotation": self.rotation.cpu(),
            "targets": self.targets.cpu(),
            "method": self.refine_method,
        }

    def on_load_checkpoint(self, checkpoint: dict, continuing: bool = True) -> None:
        """Refinement state and DEC's centres back from a checkpoint. `continuing`: training
        goes on from it (False: it is only embedded and clustered, any method will do)."""
        state = checkpoint.get("refinement")
        weights = checkpoint.get("state_dict", {})
        if state is None and "targets" in weights:  # checkpoints of 0.1, where they were buffers
            state = {"rotation": weights.pop("rotation"), "targets": weights.pop("targets")}
        if state is not None:
            # a checkpoint inside one refinement cannot go on with the other's targets; one
            # saved before refinement (no targets) starts either
            method = state.get("method", "dec" if "centers" in weights else "dekm")
            inside = continuing and state["targets"].numel() > 0
            if inside and self.refine_method == "none":  # it went on refining, recorded as none
                raise ConfigError(
                    f"refine=none, but the checkpoint stopped inside refine.method={method}'s "
                    f"refinement: to go on refining, refine={method}; to cluster it as it is, "
                    "trainer.max_epochs=0; to train on without refinement, start from a "
                    "checkpoint of the pretraining"
                )
            if inside and method != self.refine_method:
                raise ConfigError(
                    f"refine.method={self.refine_method}, but the checkpoint stopped inside "
                    f"refine.method={method}'s refinement: resume with refine.method={method}, "
                    "or start the new method from a checkpoint of the pretraining"
                )
            self.set_targets(state["rotation"], state["targets"])
        if "centers" in weights:  # DEC's centres: the parameter must exist before the weights
            # load, and before configure_optimizers, which then trains it as the run did
            self.register_parameter(
                "centers", torch.nn.Parameter(torch.empty_like(weights["centers"]))
            )

    # --- training ----------------------------------------------------------------------
    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, idx = batch  # (B, C, H, W) float in [0, 1], (B,) long
        x = self._prep(x)
        augmenting = self.augment is not None and (self.augment_refinement or not self.refining)
        seen = self.augment(x, self.augment_draw(batch_idx)) if augmenting else x
        if self.refining:
            z = self.model.encode(seen)  # (B, d)
            if self.refine_method == "dec":
                loss = kl_loss(self.targets[idx], soft_assign(z, self.centers, self.dec_alpha))
            else:
                loss = F.mse_loss(z @ self.rotation, self.targets[idx])
            if self.recon_weight > 0:
                loss = loss + self.recon_weight * F.mse_loss(self.model.decode(z), x)
            else:
                # the decoder takes no part: a zero term keeps every parameter in the graph,
                # so DDP needs no unused-parameter search; on_after_backward drops its grads
                loss = loss + 0.0 * sum(p.sum() for p in self.model.decoder.parameters())
        else:
            _, recon = self.model(seen)
            loss = F.mse_loss(recon, x)
        self.epoch_loss.update(loss.detach(), weight=len(x))
        self._loss_sum = self._loss_sum.to(loss.device) + loss.detach()
        if (batch_idx + 1) % self.nan_check_every == 0:
            self.check_finite(self._loss_sum, f"checked every {self.nan_check_every} steps")
        self.log("train/loss", loss, prog_bar=True, batch_size=len(x))
        return loss

    def augment_draw(self, batch_idx: int = 0) -> int:
        """What an augmentation is seeded with (it is called as augment(x, draw)): the batch's
        place in the run. With one batch per optimizer step that is the step; under gradient
        accumulation the micro-batches of one step get their own draws too (the step alone
        moved the i-th image of each alike). Under DDP each rank draws its own transforms:
        offsets 2**24 apart, since torch's CPU generator keeps a seed's low 32 bits only (256
        ranks stay distinct for 16.7 million batches). Rank 0 draws what one device does."""
        trainer = self._trainer
        accumulate = getattr(trainer, "accumulate_grad_batches", 1) if trainer is not None else 1
        batch = self.global_step * accumulate + batch_idx % accumulate
        return batch + self.global_rank * 2**24

    def on_after_backward(self) -> None:
        if self.refining and self.recon_weight == 0:  # Adam must not move the decoder
            for p in self.model.decoder.parameters():
                p.grad = None
        world = self.trainer.world_size if self._trainer is not None else 1
        if (
            self.centers is not None
            and self.centers.grad is not None
            and world > 1
            and not self._centers_in_ddp
        ):
            # DEC's centres joined after DDP wrapped the model, so DDP does not average their
            # gradient: do it here, or every rank would train its own centres
            torch.distributed.all_reduce(self.centers.grad)
            self.centers.grad /= world

    def check_finite(self, value: torch.Tensor, when: str) -> None:
        if not torch.isfinite(value):
            raise NonFiniteLossError(
                f"the training loss became {float(value)} at epoch {self.current_epoch}, "
                f"step {self.global_step} ({when}). Lower optim.lr or check the data."
            )

    def epoch_mean_loss(self) -> float:
        """The epoch's mean training loss over all ranks; resets for the next epoch."""
        loss = self.epoch_loss.compute()
        self.epoch_loss.reset()
        self._loss_sum = torch.zeros((), device=self.device)
        self.check_finite(loss, "checked at the epoch end")
        return float(loss)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        if self.centers is not None:  # a run resumed inside DEC's refinement
            optimizer.add_param_group({"params": [self.centers]})
        if self.lr_schedule is None:
            return optimizer
        epochs = max(1, self.trainer.max_epochs or 1)
        steps_per_epoch = math.ceil(self.trainer.estimated_stepping_batches / epochs)
        factor = self.lr_schedule(steps_per_epoch)
        # counted from the run's start (the trainer's step), not from the scheduler's creation:
        # a checkpoint continued without a scheduler state of its own (a constant-rate
        # pretraining, then schedule=fast) restarted the cycle inside refinement
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda _: factor(self.trainer.global_step)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # --- inference ---------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Codes of clean images. images: (N, C, H, W) uint8 (any device) → (N, d) float32
        on the module's device."""
        batch_size = batch_size or self.embed_batch_size
        was_training = self.training
        self.eval()
        chunks = []
        cudnn = torch.backends.cudnn
        # full float32 convolutions on a GPU (cuDNN's default is TF32, a 10-bit mantissa): the
        # codes the run clusters are then those deepcluster-predict computes on the CPU
        with cudnn.flags(
            enabled=cudnn.enabled,
            benchmark=cudnn.benchmark,
            deterministic=cudnn.deterministic,
            allow_tf32=False,
        ):
            for start in range(0, len(images), batch_size):
                x = images[start : start + batch_size].to(self.device, non_blocking=True)
                x = self._prep(x.float().div_(255.0))
                chunks.append(self.model.encode(x).float())
        self.train(was_training)
        return torch.cat(chunks)
