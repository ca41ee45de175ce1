"""DEC's refinement (Xie et al. 2016; DEC-DA, Guo et al. 2018, with augmented inputs).

Each code z_n is softly assigned to k learnable centres u_j by a Student-t kernel,
q_nj ∝ (1 + ||z_n − u_j||² / α)^(−(α+1)/2); every update sharpens Q into the target
P (p_nj ∝ q_nj² / f_j, f_j = Σ_n q_nj: confident assignments count more, large clusters less),
and the encoder and the centres then minimise KL(P ‖ Q) until the next update. The labels
are argmax_j q_nj, which is the nearest centre: the kernel falls with the distance.
"""

from __future__ import annotations

import torch


def soft_assign(z: torch.Tensor, centers: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Q: z (N, d), centers (k, d) → (N, k), rows summing to 1."""
    d2 = (z[:, None, :] - centers[None, :, :]).square().sum(-1)  # (N, k); cdist's sqrt has
    # no gradient at a distance of 0
    logits = -(alpha + 1.0) / 2.0 * torch.log1p(d2 / alpha)  # log of the unnormalised kernel
    return torch.softmax(logits, dim=1)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """P from Q (N, k): each column weighted by 1 / its soft frequency, squared, rows to 1."""
    weight = q.square() / q.sum(0)
    return weight / weight.sum(1, keepdim=True)


def kl_loss(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(P ‖ Q) summed over clusters, averaged over the rows (a batch of P's rows)."""
    p = p.clamp_min(1e-12)
    return (p * (p.log() - q.clamp_min(1e-12).log())).sum(1).mean()
