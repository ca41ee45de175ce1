"""Why the all-Sigmoid CAE sits at the mean image, and what moves it (issue 11).

    python bench/sigmoid_study.py [--out results/sigmoid_study.json]

Plain PyTorch on the method-A CAE of deepcluster.models, Adam 1e-3, MSE on [0, 1] pixels,
seed 0. For each variant: the reconstruction loss per epoch divided by the mean-image loss
(what a network that ignores its input reaches: 1.0), and at initialisation the signal that
reaches the output (std over images of the reconstruction, per pixel, averaged).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from deepcluster.data import DigitsDataModule, MNISTDataModule
from deepcluster.machine import describe
from deepcluster.models import CAE

VARIANTS = {  # name → CAE arguments
    "relu, default init": {"activation": "relu"},
    "sigmoid, default init": {"activation": "sigmoid"},
    "sigmoid, glorot (Keras)": {"activation": "sigmoid", "init": "glorot"},
    "sigmoid, glorot_sigmoid (ours)": {"activation": "sigmoid", "init": "glorot_sigmoid"},
    "sigmoid, glorot + BatchNorm": {"activation": "sigmoid", "init": "glorot", "norm": "batch"},
}
SETS = {  # name → (images loader, batch size, epochs)
    "digits": (lambda root: DigitsDataModule().prepare().images, 32, 12),
    "mnist_test": (
        lambda root: MNISTDataModule(root=root, split="test", download=False).prepare().images,
        256,
        20,
    ),
}


def signal_at_output(model: CAE, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(model(x[:512])[1].std(0).mean())


def train(x: torch.Tensor, kwargs: dict, batch_size: int, epochs: int) -> dict:
    torch.manual_seed(0)
    model = CAE(**kwargs)
    signal = signal_at_output(model, x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    mean_loss = float(((x - x.mean(0)) ** 2).mean())
    ratios, started = [], time.perf_counter()
    for _ in range(epochs):
        order, total = torch.randperm(len(x), generator=gen), 0.0
        for i in range(0, len(x), batch_size):
            xb = x[order[i : i + batch_size]]
            loss = F.mse_loss(model(xb)[1], xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        ratios.append(round(total / len(x) / mean_loss, 4))
    return {
        "loss_over_mean_image": ratios,
        "mean_image_loss": round(mean_loss, 5),
        "output_signal_at_init": signal,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared/data"))
    p.add_argument("--out", default="results/sigmoid_study.json")
    p.add_argument("--sets", nargs="*", default=list(SETS))
    args = p.parse_args(argv)
    results = {"machine": describe(), "runs": []}
    for set_name in args.sets:
        load, batch_size, epochs = SETS[set_name]
        x = load(args.data_root).float() / 255
        for name, kwargs in VARIANTS.items():
            r = train(x, kwargs, batch_size, epochs)
            results["runs"].append(
                {"data": set_name, "variant": name, "batch_size": batch_size, **r}
            )
            print(
                f"{set_name:10s} {name:32s} signal {r['output_signal_at_init']:.1e} | "
                + " ".join(f"{v:.3f}" for v in r["loss_over_mean_image"]),
                flush=True,
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
