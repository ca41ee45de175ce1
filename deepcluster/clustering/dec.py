"""DEC's refinement (Xie et al. 2016; DEC-DA, Guo et al. 2018, with augmented inputs).

Each code z_n is softly assigned to k learnable centres u_j by a Student-t kernel,
q_nj ∝ (1 + ||z_n − u_j||² / α)^(−(α+1)/2); every update sharpens Q into the target
P (p_nj ∝ q_nj² / f_j, f_j = Σ_n q_nj: confident assignments count more, large clusters less),
and the encoder and the centres then minimise KL(P ‖ Q) until the next update. The labels
are argmax_j q_nj, which is the nearest centre: the kernel falls with the distance.
"""

from __future__ import annotations

import torch


def _kernel(d2: torch.Tensor, alpha: float) -> torch.Tensor:
    """Q from squared distances (N, k): the Student-t kernel, rows normalised."""
    logits = -(alpha + 1.0) / 2.0 * torch.log1p(d2 / alpha)  # log of the unnormalised kernel
    return torch.softmax(logits, dim=1)


def soft_assign(z: torch.Tensor, centers: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Q: z (N, d), centers (k, d) → (N, k), rows summing to 1; differentiable (a batch)."""
    d2 = (z[:, None, :] - centers[None, :, :]).square().sum(-1)  # (N, k); cdist's sqrt has
    # no gradient at a distance of 0
    return _kernel(d2, alpha)


@torch.no_grad()
def assign_all(
    z: torch.Tensor, centers: torch.Tensor, alpha: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q, P) for every code at an update, z (N, d): no gradient, and N × k memory.

    The squared distances come from ‖z‖² + ‖u‖² − 2 z·u in float64 (no N × k × d array)."""
    z64, c64 = z.double(), centers.double()
    d2 = (z64.square().sum(1, keepdim=True) + c64.square().sum(1) - 2.0 * z64 @ c64.T).clamp_min(0)
    q = _kernel(d2, alpha).float()
    return q, target_distribution(q)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """P from Q (N, k): each column weighted by 1 / its soft frequency, squared, rows to 1."""
    weight = q.square() / q.sum(0)
    return weight / weight.sum(1, keepdim=True)


def kl_loss(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(P ‖ Q) summed over clusters, averaged over the rows (a batch of P's rows)."""
    p = p.clamp_min(1e-12)
    return (p * (p.log() - q.clamp_min(1e-12).log())).sum(1).mean()
