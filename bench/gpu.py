"""The GPU benchmark: `python bench/gpu.py` on a machine with CUDA → bench/results_gpu.{json,md}.

All figures from one run on one device, variants interleaved (best of --repeats):
  1. training images/s of deepcluster's path (Lightning, the dataset tensor on the GPU),
     a bare loop over the same GPU tensor (FP32, bf16 autocast, torch.compile with CUDA
     graphs: "reduce-overhead"; the whole step captured by hand in one CUDA graph) and the
     DataLoader peer (torchvision MNIST + ToTensor, pinned memory, workers);
  2. one MNIST-full epoch split into its parts: training, the embedding pass, k-means on
     the codes with scikit-learn (CPU) and with our torch k-means on the GPU (their inertia
     side by side: the same quality is the condition for using it).
`--device cpu` runs every path on the CPU on a few images: the default test suite does so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import load_images  # noqa: E402
from deepcluster.machine import describe  # noqa: E402
from deepcluster.models import CAE, DeepClusterModule  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(images: torch.Tensor, bs: int, steps: int, warmup: int, run) -> float:
    """Images/s of run(batch indices) over a shuffled pass of `images`, after `warmup` steps."""
    device = images.device
    perm = torch.randperm(len(images), device=device)
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        start = (i * bs) % (len(images) - bs)
        run(perm[start : start + bs])
    _sync(device)
    return steps * bs / (time.perf_counter() - t0)


def bare(images: torch.Tensor, bs: int, steps: int, warmup: int, mode: str) -> float:
    """A plain Adam loop over slices of the device-resident uint8 tensor.
    mode: fp32 | bf16 | compile (torch.compile, CUDA graphs on a GPU)."""
    device = images.device
    torch.manual_seed(0)
    model = CAE("relu").to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=mode == "compile")

    def step(x):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode == "bf16"):
            _, recon = model(x)
        loss = F.mse_loss(recon.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    if mode == "compile":
        step = torch.compile(step, mode="reduce-overhead" if device.type == "cuda" else "default")
    return _timed(images, bs, steps, warmup, lambda idx: step(images[idx].float().div_(255)))


def bare_graph(images: torch.Tensor, bs: int, steps: int, warmup: int) -> float | None:
    """The bare loop with its whole step (gather, forward, backward, Adam) captured once in a
    CUDA graph and replayed: one launch per step instead of ~100. What a step costs when
    launches are taken out, i.e. the ceiling for any graph-captured training path. Without
    inductor (torch.compile's graphs crashed on torch 2.11). GPU only: None elsewhere."""
    device = images.device
    if device.type != "cuda":
        return None
    torch.manual_seed(0)
    model = CAE("relu").to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True)
    index = torch.zeros(bs, dtype=torch.long, device=device)  # the graph reads its batch here

    def step():
        x = images[index].float().div_(255)
        _, recon = model(x)
        loss = F.mse_loss(recon, x)
        loss.backward()
        opt.step()
        return loss

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up off the default stream before capture (as documented)
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    # grads None at capture: backward then writes them (not adds to them) from the graph's own
    # memory, so a replay needs no zero_grad (PyTorch's "whole network capture" recipe)
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()

    def replay(idx):
        index.copy_(idx)
        graph.replay()

    return _timed(images, bs, steps, warmup, replay)


def ours(
    images: torch.Tensor, bs: int, steps: int, warmup: int, precision: str, deterministic=None
) -> float:
    """deepcluster's path: DeepClusterModule + the in-memory datamodule under a Trainer.
    deterministic: as trainer.deterministic (trainer=gpu runs with "warn": deterministic cuDNN
    kernels, which may be slower; the 200-epoch run's epochs took 1.33 s against 1.0 s here)."""
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from deepcluster.data.base import ImageDataModule

    class Fixed(ImageDataModule):
        def load(self):
            return images.cpu(), None

    class Clock(Callback):
        t0 = t1 = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == warmup:
                _sync(pl_module.device)
                self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.t1 = time.perf_counter()

    torch.manual_seed(0)
    clock = Clock()
    accelerator = "gpu" if images.device.type == "cuda" else "cpu"
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=1,
        precision=precision,
        deterministic=deterministic,
        limit_train_batches=warmup + steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
        use_distributed_sampler=False,
    )
    trainer.fit(DeepClusterModule(CAE("relu")), datamodule=Fixed(batch_size=bs))
    _sync(images.device)
    return steps * bs / (time.perf_counter() - clock.t0)


def peer(root: str | None, device: torch.device, bs: int, steps: int, warmup: int) -> float | None:
    """What a user would write: torchvision MNIST, ToTensor(), a DataLoader with workers."""
    import torchvision
    from torch.utils.data import DataLoader

    if not root:
        return None
    try:
        ds = torchvision.datasets.MNIST(
            root, train=True, download=False, transform=torchvision.transforms.ToTensor()
        )
    except RuntimeError:
        return None
    workers = min(8, os.cpu_count() or 1)
    loader = DataLoader(
        ds,
        batch_size=bs,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=True,
    )
    torch.manual_seed(0)
    model = CAE("relu").to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = 0.0
    for i, (x, _) in enumerate(loader):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        if i == warmup + steps:
            break
        x = x.to(device, non_blocking=True)
        loss = F.mse_loss(model(x)[1], x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return steps * bs / (time.perf_counter() - t0)


def epoch_parts(images: torch.Tensor, bs: int) -> dict:
    """One epoch over all images, split: train (bare FP32 loop), embed, k-means (two ways)."""
    from deepcluster.clustering.kmeans import kmeans, kmeans_torch

    device = images.device
    n_steps = len(images) // bs
    train_s = n_steps * bs / bare(images, bs, n_steps, 0, "fp32")
    module = DeepClusterModule(CAE("relu")).to(device)
    module.embed(images[:2048])
    _sync(device)
    t0 = time.perf_counter()
    z = module.embed(images)
    _sync(device)
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = kmeans(z.cpu().numpy(), 10, n_init=10, seed=0)
    sk_s = time.perf_counter() - t0
    kmeans_torch(z[:2048], 10, n_init=1, seed=0)  # warm-up (kernels, allocator)
    _sync(device)
    t0 = time.perf_counter()
    ours_km = kmeans_torch(z, 10, n_init=10, seed=0)
    _sync(device)
    torch_s = time.perf_counter() - t0
    return {
        "n": len(images),
        "train_epoch_s": round(train_s, 3),
        "embed_s": round(embed_s, 3),
        "kmeans_sklearn_s": round(sk_s, 3),
        "kmeans_torch_s": round(torch_s, 3),
        "kmeans_inertia_rel_diff": round(ours_km.objective / ref.objective - 1, 5),
        "update_s_torch": round(embed_s + torch_s, 3),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data-root", default=os.environ.get("DEEPCLUSTER_DATA"))
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--n-images", type=int, default=None)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--out", default="bench/results_gpu.json")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    images, source = load_images(args.data_root)
    images = images[: args.n_images] if args.n_images else images
    gpu_images = images.to(device)
    bs, steps, warm = args.batch_size, args.steps, args.warmup
    variants = {
        "ours": lambda: ours(gpu_images, bs, steps, warm, "32-true"),
        "ours_bf16": lambda: ours(gpu_images, bs, steps, warm, "bf16-mixed"),
        "ours_deterministic": lambda: ours(gpu_images, bs, steps, warm, "32-true", "warn"),
        "bare": lambda: bare(gpu_images, bs, steps, warm, "fp32"),
        "bare_bf16": lambda: bare(gpu_images, bs, steps, warm, "bf16"),
        "bare_graph": lambda: bare_graph(gpu_images, bs, steps, warm),
        "peer": lambda: peer(args.data_root, device, bs, steps, warm),
    }
    if not args.no_compile:
        variants["bare_compile"] = lambda: bare(gpu_images, bs, steps, warm, "compile")
    best: dict[str, float] = {}
    errors: dict[str, str] = {}  # a variant that fails (torch.compile, say) is reported, not fatal
    for rep in range(args.repeats):
        for name, fn in variants.items():
            if name in errors:
                continue
            try:
                value = fn()
            except Exception as exc:  # noqa: BLE001
                errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                print(f"[gpu bench] {name} failed: {errors[name]}", flush=True)
                continue
            if value is not None:
                best[name] = max(best.get(name, 0.0), value)
                print(f"[gpu bench] repeat {rep}: {name:12s} {value:9.0f} img/s", flush=True)
    machine = describe()
    results = {
        "device": machine["gpu"] or machine["cpu"],
        "machine": machine,
        "data": source,
        "batch_size": bs,
        "img_per_s": {k: round(v, 1) for k, v in best.items()},
        "ours_vs_peer": round(best["ours"] / best["peer"], 3) if "peer" in best else None,
        "ours_vs_bare": round(best["ours"] / best["bare"], 3),
        "epoch": epoch_parts(gpu_images, bs),
        "errors": errors,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"| {k} | {v} img/s |" for k, v in results["img_per_s"].items()]
    lines += [f"| {k} | {v} |" for k, v in results["epoch"].items()]
    out.with_suffix(".md").write_text(
        f"Device: {results['device']}\n\n| figure | value |\n|---|---|\n" + "\n".join(lines) + "\n"
    )
    print(out.with_suffix(".md").read_text())
    return results


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
