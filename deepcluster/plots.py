"""Figures: latent 2-D map, ACC-vs-epoch curve, confusion matrix. Saved as PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.metrics.cluster import contingency_matrix  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def project_2d(z: np.ndarray, max_points: int = 5000, seed: int = 0):
    """PCA of a random subsample to 2-D. z: (N, d) → (points (M, 2), chosen indices (M,))."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(z), size=min(max_points, len(z)), replace=False))
    sub = np.asarray(z[idx], dtype=np.float64)
    if sub.shape[1] > 2:
        sub = PCA(n_components=2, random_state=seed).fit_transform(sub)
    elif sub.shape[1] == 1:
        sub = np.hstack([sub, np.zeros_like(sub)])
    return sub, idx


def latent_map(z: np.ndarray, labels: np.ndarray, path: Path, title: str = "") -> Path:
    """Scatter of the codes (PCA to 2-D) coloured by cluster."""
    xy, idx = project_2d(z)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    k = int(labels.max()) + 1
    ax.scatter(xy[:, 0], xy[:, 1], c=labels[idx], cmap="tab20" if k > 10 else "tab10", s=3,
               alpha=0.7, linewidths=0)  # fmt: skip
    ax.set_title(title or "codes (PCA), coloured by cluster")
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, path)


def accuracy_curve(history: Sequence[dict], path: Path, title: str = "") -> Path:
    """ACC and NMI per epoch; refinement epochs shaded."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(epochs, [h["acc"] for h in history], "o-", label="ACC")
    ax.plot(epochs, [h["nmi"] for h in history], "s--", label="NMI")
    refine = [h["epoch"] for h in history if h.get("phase") == "refine"]
    if refine:
        ax.axvspan(min(refine) - 0.5, max(refine) + 0.5, color="0.9", label="refinement")
    ax.set_xlabel("epoch")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "clustering quality per epoch")
    return _save(fig, path)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, path: Path, title: str = "") -> Path:
    """Classes × clusters counts."""
    table = contingency_matrix(y_true, y_pred)
    fig, ax = plt.subplots(figsize=(0.45 * table.shape[1] + 2, 0.45 * table.shape[0] + 1.5))
    ax.imshow(table, cmap="Blues")
    ax.set_xlabel("cluster")
    ax.set_ylabel("class")
    ax.set_xticks(range(table.shape[1]))
    ax.set_yticks(range(table.shape[0]))
    ax.set_title(title or "classes × clusters")
    return _save(fig, path)
