"""Why augmented refinement drifts on Fashion-MNIST and not on MNIST: how far the
augmentation moves an image's code, measured against the clusters.

    python bench/augment_study.py RUN [RUN ...]   → results/augment_flips.json and a table

RUN is a finished pretraining run folder (RESULTS.md, "Augmentation"). Its images are embedded
clean and augmented (`augment=affine` with the YAML's ranges, `--draws` different augmented
batches), both codes are assigned to the run's final k-means centres (fitted on clean codes),
and we report, label-free:
- flip: the fraction of augmented images whose nearest centre is not their clean image's one
  (refinement with augmented inputs pulls each such code across a boundary, onto the clean
  image's target);
- slope: least-squares slope of the augmented codes on the clean ones (1: no shrinkage);
- shift / gap: mean distance between an image's augmented and clean codes, over the mean
  distance from a centre to its nearest other centre.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from deepcluster.build import instantiate
from deepcluster.clustering.base import NearestCentroid
from deepcluster.data.augment import Affine
from deepcluster.predict import Predictor


def measure(run: Path, draws: int, sample: int) -> dict:
    pred = Predictor(run)
    cfg = pred.cfg
    images = instantiate(cfg.dataset, "dataset").prepare().images  # (N, C, H, W) uint8
    if len(images) > sample:
        keep = torch.from_numpy(np.random.default_rng(0).choice(len(images), sample, False))
        images = images[keep]
    assign = NearestCentroid(pred.state["centers"])  # the run's k-means centres (clean codes)
    centres = assign.centers
    x = images.float().div(255.0)
    clean = encode(pred.module.model, x)
    clean_c = assign.predict(clean)
    aug = Affine(**affine_ranges(cfg), seed=1234)
    gaps = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1))
    np.fill_diagonal(gaps, np.inf)
    flips, slopes, shifts = [], [], []
    for step in range(draws):
        z = encode(pred.module.model, aug(x, step))
        flips.append(float(np.mean(assign.predict(z) != clean_c)))
        zc, cc = z - z.mean(0), clean - clean.mean(0)
        slopes.append(float((zc * cc).sum() / (cc * cc).sum()))
        shifts.append(float(np.linalg.norm(z - clean, axis=1).mean()))
    return {
        "run": str(run),
        "dataset": f"{cfg.dataset.name}/{cfg.dataset.get('split', 'all')}",
        "augment_in_training": cfg.augment.get("name", "none"),
        "n": len(images),
        "flip": float(np.mean(flips)),
        "slope": float(np.mean(slopes)),
        "shift_over_gap": float(np.mean(shifts) / gaps.min(1).mean()),
    }


def affine_ranges(cfg) -> dict:
    """The run's own ranges when it trained with affine, else the affine defaults."""
    node = cfg.get("augment") or {}
    keys = ("max_shift", "max_rotation", "scale")
    return {k: (tuple(node[k]) if k == "scale" else node[k]) for k in keys if k in node}


@torch.no_grad()
def encode(model, x: torch.Tensor, batch: int = 2048) -> np.ndarray:
    """Codes of float images in [0, 1]: module.embed takes uint8, and re-quantising the
    augmented images would change them."""
    model.eval()
    return torch.cat([model.encode(x[i : i + batch]) for i in range(0, len(x), batch)]).numpy()


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--sample", type=int, default=10_000, help="images per run (at most)")
    ap.add_argument("--out", type=Path, default=Path("results/augment_flips.json"))
    args = ap.parse_args(argv)
    rows = [measure(run, args.draws, args.sample) for run in args.runs]
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print("| run | data | trained with | n | flip | slope | shift / centre gap |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {Path(r['run']).name} | {r['dataset']} | {r['augment_in_training']} | {r['n']} "
            f"| {r['flip']:.3f} | {r['slope']:.3f} | {r['shift_over_gap']:.3f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
