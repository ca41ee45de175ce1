"""Every published setting of both papers, and our recipe beside them.

A setting is an experiment file (conf/experiment/) plus the overrides that pick it (k, the
activation). What a setting shares with others — the reconstruction pretraining of one
(dataset, split, model, activation, seed) — is trained once and continued by each.
"""

from __future__ import annotations

from dataclasses import dataclass

# what the papers (and the reference implementations) published, labels used only to score
REFERENCE_A = "full-scale DEKM reference, 3-run mean (the paper itself: 0.8942)"


@dataclass(frozen=True)
class Setting:
    name: str  # e.g. "A/mnist/k10/relu"
    paper: str
    experiment: str  # the published schedule; `<experiment>_quick` is the short one
    dataset: str
    split: str
    model: str
    activation: str
    k: int
    clusterer: str
    refine: bool  # continue the pretraining with refinement (else: cluster it once)
    published: dict | None = None  # {"acc", "nmi", "source"}

    def pretrain_epochs(self, quick: bool) -> int:
        """Reconstruction epochs: 200 at the published schedules; the quick ones' own."""
        if not quick:
            return 200
        return 20 if self.split == "test" else 10

    def pretrain_key(self, seed: int, quick: bool) -> str:
        tail = "-quick" if quick else ""
        return f"{self.dataset}-{self.split}-{self.model}-{self.activation}-s{seed}{tail}"

    def run_key(self, seed: int, quick: bool) -> str:
        return self.name.replace("/", "-") + f"-s{seed}" + ("-quick" if quick else "")


def _method_a() -> list[Setting]:
    out = []
    for dataset, short in (("mnist", "mnist"), ("fashion_mnist", "fashion")):
        for activation in ("relu", "sigmoid"):
            for k in (5, 10, 15):
                published = None
                if k == 10 and activation == "relu":
                    published = (
                        {"acc": 0.9575, "nmi": 0.9106, "source": REFERENCE_A}
                        if short == "mnist"
                        else {"acc": 0.5664, "nmi": None, "source": "method A's paper"}
                    )
                out.append(
                    Setting(
                        f"A/{short}/k{k}/{activation}",
                        "A: CAE + k-means + V-rotation",
                        f"dekm_{short}",
                        dataset,
                        "all",
                        "cae",
                        activation,
                        k,
                        "kmeans",
                        True,
                        published,
                    )
                )
    return out


SETTINGS: list[Setting] = [
    *_method_a(),
    Setting(
        "B/mnist",
        "B: deeper CAE + Ward",
        "ward_mnist",
        "mnist",
        "all",
        "cae_deep",
        "relu",
        10,
        "ward",
        False,
        {"acc": 0.9563, "nmi": 0.9192, "source": "method B's paper"},
    ),
    Setting(
        "B/mnist_test",
        "B: deeper CAE + Ward",
        "ward_mnist_test",
        "mnist",
        "test",
        "cae_deep",
        "relu",
        10,
        "ward",
        False,
        {"acc": 0.8753, "nmi": 0.8410, "source": "method B's paper"},
    ),
    Setting(
        "N2D/mnist",
        "ours: CAE + UMAP + GMM",
        "n2d_mnist",
        "mnist",
        "all",
        "cae",
        "relu",
        10,
        "gmm",
        False,
        {"acc": 0.979, "nmi": 0.942, "source": "N2D paper"},
    ),
    Setting(
        "N2D/fashion",
        "ours: CAE + UMAP + GMM",
        "n2d_fashion",
        "fashion_mnist",
        "all",
        "cae",
        "relu",
        10,
        "gmm",
        False,
        {"acc": 0.672, "nmi": 0.684, "source": "N2D paper"},
    ),
    Setting(
        "N2D/mnist_test",
        "ours: CAE + UMAP + GMM",
        "n2d_mnist_test",
        "mnist",
        "test",
        "cae",
        "relu",
        10,
        "gmm",
        False,
        {"acc": 0.948, "nmi": None, "source": "N2D paper"},
    ),
]
