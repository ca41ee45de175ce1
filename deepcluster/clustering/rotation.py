"""Method A's code-space rotation and greedy targets (DESIGN.md §1.A, steps 3–4)."""

from __future__ import annotations

import numpy as np


def within_cluster_scatter(z: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Sw = Σ_i Σ_{c_n=i} (z_n − u_i)(z_n − u_i)ᵀ.

    z: (N, d), labels: (N,) in [0, k), centers: (k, d) → (d, d) symmetric PSD.
    """
    z = np.asarray(z, dtype=np.float64)
    diff = z - np.asarray(centers, dtype=np.float64)[labels]  # (N, d)
    return diff.T @ diff


def rotation(scatter: np.ndarray) -> np.ndarray:
    """V: (d, d) orthogonal, eigenvectors of Sw as columns in ascending eigenvalue order.

    The last column is the direction of largest within-cluster variance.
    """
    _, vectors = np.linalg.eigh(scatter)
    return vectors


def rotation_targets(
    z: np.ndarray, labels: np.ndarray, centers: np.ndarray, v: np.ndarray
) -> np.ndarray:
    """Greedy targets T: Y = Z·V with Y[:, −1] replaced by the centroid's (U·V)[c, −1].

    Returns (N, d); identical to Y in every column but the last.
    """
    y = np.asarray(z, dtype=np.float64) @ v
    u_rot = np.asarray(centers, dtype=np.float64) @ v
    y[:, -1] = u_rot[labels, -1]
    return y


def rotate_and_target(
    z: np.ndarray, labels: np.ndarray, centers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 3–4 at once: returns (V (d, d), T (N, d))."""
    v = rotation(within_cluster_scatter(z, labels, centers))
    return v, rotation_targets(z, labels, centers, v)


def code_rms(z: np.ndarray) -> float:
    """Root mean square of the codes (N, d): their overall scale."""
    return float(np.sqrt(np.mean(np.square(np.asarray(z, dtype=np.float64)))))
