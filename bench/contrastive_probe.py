"""Probe for issue 15: does a contrastive term on the CAE's code make clusters UMAP + GMM can
read better than reconstruction alone? Plain torch, fixed settings chosen before any run.

    python bench/contrastive_probe.py --dataset FashionMNIST --split test --flip   # ≈ 8 min
    python bench/contrastive_probe.py --dataset MNIST --split test                 # (1 thread)

Loss per batch: MSE(decode(f(v1)), x) + weight · NT-Xent(g(f(v1)), g(f(v2))), where v1, v2 are
two augmented views of the clean batch x (augment=affine's shifts and rotations, zoom 0.8-1.2,
and with --flip a left-right flip, which keeps a garment's class but not a digit's), f is
method A's CAE encoder (10-d code) and g a 10 → 128 → 64 projection head (SimCLR's recipe,
temperature 0.5, batch 256, Adam 1e-3). Every 10 epochs k-means (10 starts) on the codes is
scored; at the end UMAP (10-d, 20 neighbours, min_dist 0) + a 5-start full-covariance GMM, as
our N2D reading. Labels only score. Prints one JSON line per epoch and a last one with the
UMAP + GMM scores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score
from torch import nn

from deepcluster.clustering.metrics import cluster_accuracy
from deepcluster.data.augment import Affine
from deepcluster.data.idx import read_idx
from deepcluster.models.cae import CAE

FILES = {"test": ["t10k"], "all": ["train", "t10k"]}


def load(root: Path, dataset: str, split: str) -> tuple[torch.Tensor, np.ndarray]:
    raw = root / dataset / "raw"
    x = np.concatenate([read_idx(raw / f"{p}-images-idx3-ubyte", 3) for p in FILES[split]])
    y = np.concatenate([read_idx(raw / f"{p}-labels-idx1-ubyte", 1) for p in FILES[split]])
    return torch.from_numpy(x).float().div(255).unsqueeze(1), y  # (N, 1, 28, 28), (N,)


def nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR's loss: each view's positive is the other view of its image. a, b: (B, p)."""
    z = F.normalize(torch.cat([a, b]), dim=1)  # (2B, p)
    sim = z @ z.T / tau
    sim.fill_diagonal_(float("-inf"))
    n = len(a)
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, positive)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="FashionMNIST", choices=["MNIST", "FashionMNIST"])
    ap.add_argument("--split", default="test", choices=list(FILES))
    ap.add_argument("--root", type=Path, default=Path("../shared/data"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--weight", type=float, default=1.0, help="of the contrastive term")
    ap.add_argument("--flip", action="store_true", help="left-right flips in the views")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_all, y = load(args.root, args.dataset, args.split)
    n = len(x_all)
    model, head = CAE("relu"), nn.Sequential(nn.Linear(10, 128), nn.ReLU(), nn.Linear(128, 64))
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-3)
    affine = Affine(0.1, 10.0, (0.8, 1.2), seed=args.seed)

    def view(x: torch.Tensor, draw: int) -> torch.Tensor:
        v = affine(x, draw)
        if args.flip:
            gen = torch.Generator().manual_seed(args.seed * 7919 + draw)
            flip = torch.rand(len(x), generator=gen) < 0.5
            v = torch.where(flip[:, None, None, None], v.flip(-1), v)
        return v

    @torch.no_grad()
    def embed() -> np.ndarray:
        model.eval()
        z = torch.cat([model.encode(x_all[i : i + 2048]) for i in range(0, n, 2048)])
        model.train()
        return z.numpy()  # (N, 10)

    def scores(labels: np.ndarray) -> tuple[float, float]:
        return cluster_accuracy(y, labels), normalized_mutual_info_score(y, labels)

    step, t0 = 0, time.time()
    for epoch in range(1, args.epochs + 1):
        recon_sum = con_sum = 0.0
        for batch in torch.randperm(n).split(256):
            x = x_all[batch]
            z1, z2 = model.encode(view(x, 2 * step)), model.encode(view(x, 2 * step + 1))
            recon = F.mse_loss(model.decode(z1), x)
            con = nt_xent(head(z1), head(z2), tau=0.5)
            opt.zero_grad()
            (recon + args.weight * con).backward()
            opt.step()
            step += 1
            recon_sum, con_sum = recon_sum + recon.item() * len(x), con_sum + con.item() * len(x)
        row = {"epoch": epoch, "recon": recon_sum / n, "contrastive": con_sum / n}
        if epoch % 10 == 0 or epoch == args.epochs:
            km = KMeans(10, n_init=10, random_state=args.seed).fit(embed())
            row["kmeans_acc"], row["kmeans_nmi"] = scores(km.labels_)
        row["s"] = round(time.time() - t0)
        print(json.dumps(row), flush=True)

    import umap  # noqa: PLC0415  (slow import, only at the end)
    from sklearn.mixture import GaussianMixture  # noqa: PLC0415

    m = umap.UMAP(n_components=10, n_neighbors=20, min_dist=0.0, random_state=args.seed)
    e = m.fit_transform(embed())
    gmm = GaussianMixture(10, covariance_type="full", n_init=5, random_state=args.seed).fit(e)
    acc, nmi = scores(gmm.predict(e))
    print(json.dumps({"umap_gmm_acc": acc, "umap_gmm_nmi": nmi, "s": round(time.time() - t0)}))


if __name__ == "__main__":
    main()
