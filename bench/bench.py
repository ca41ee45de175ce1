"""Benchmark: `python bench/bench.py` (or `make bench`) → bench/results.json + a table.

All figures come from one run on this machine, the compared loops interleaved (best of
`--repeats`) so that ratios are measured side by side:
  1. training throughput (images/s, steady state, same CAE, batch size and step count) of
     deepcluster's Lightning path vs. the peer a user would write (torchvision MNIST +
     ToTensor + DataLoader) vs. a bare loop over an in-memory tensor; FLOPs per image from
     torch.utils.flop_counter and the fraction of the CPU's peak FP32 rate they reach;
    2. the embedding pass over all images; 3. k-means at N=70 000, Ward (ours, fastcluster) at
     20 000 and 70 000 next to scikit-learn's AgglomerativeClustering(ward) at 20 000, each in
     a fresh process for its peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepcluster.machine import cpu_has_native_bf16
from deepcluster.models import CAE, DeepClusterModule


def _log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# --- machine ---------------------------------------------------------------------------
def cpu_info() -> dict:
    """Model, cores, clock and the assumed peak FP32 rate (FMA lanes × 2 × cores × clock)."""
    info = {"processor": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    flags, mhz, name = "", None, ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and not name:
                name = line.split(":", 1)[1].strip()
            elif line.startswith("cpu MHz") and mhz is None:
                mhz = float(line.split(":", 1)[1])
            elif line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    # FP32 FLOP per cycle per core: two FMA pipes × vector lanes × 2 (multiply + add)
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    flop_per_cycle = 2 * lanes * 2 if "fma" in flags else lanes * 2
    ghz = (mhz or 2000.0) / 1000
    info.update(
        model=name,
        ghz=ghz,
        isa="avx512" if lanes == 16 else "avx2" if lanes == 8 else "sse",
        flop_per_cycle_per_core=flop_per_cycle,
        peak_gflops=flop_per_cycle * ghz * torch.get_num_threads(),
        threads=torch.get_num_threads(),
    )
    return info


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Achieved FP32 matmul rate: a practical ceiling to compare the assumed peak with."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


# --- data ------------------------------------------------------------------------------
def load_images(root: str | None) -> tuple[torch.Tensor, str]:
    if root:
        from deepcluster.data import MNISTDataModule

        dm = MNISTDataModule(root=root, download=False)
        try:
            dm.prepare()
            return dm.images, "mnist"
        except Exception as exc:  # fall back to synthetic data of the same size
            _log(f"real MNIST not loaded ({exc}); using synthetic images")
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (70_000, 1, 28, 28), dtype=torch.uint8, generator=g), "random"


# --- training loops --------------------------------------------------------------------
def _model(channels_last: bool) -> CAE:
    torch.manual_seed(0)
    model = CAE("relu")
    return model.to(memory_format=torch.channels_last) if channels_last else model


def bare_loop(
    images: torch.Tensor, bs: int, steps: int, warmup: int, cl: bool, bf16: bool = False
) -> float:
    """The floor of framework overhead: slices of an in-memory tensor, plain Adam loop."""
    model = _model(cl)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    perm = torch.randperm(len(images))
    t0 = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            t0 = time.perf_counter()
        idx = perm[step * bs : (step + 1) * bs]
        x = images[idx].float().div_(255)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            _, recon = model(x)
        loss = F.mse_loss(recon.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * bs / (time.perf_counter() - t0)


def peer_loop(root: str | None, bs: int, steps: int, warmup: int, workers: int) -> float | None:
    """What a user would write: torchvision MNIST, ToTensor(), DataLoader."""
    import torchvision
    from torch.utils.data import DataLoader

    if root is None:
        return None
    try:
        ds = torchvision.datasets.MNIST(
            root, train=True, download=False, transform=torchvision.transforms.ToTensor()
        )
    except RuntimeError:
        return None
    loader = DataLoader(ds, batch_size=bs, shuffle=True, num_workers=workers, drop_last=True)
    model = _model(False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = 0.0
    for step, (x, _) in enumerate(loader):
        if step == warmup:
            t0 = time.perf_counter()
        if step == warmup + steps:
            break
        _, recon = model(x)
        loss = F.mse_loss(recon, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * bs / (time.perf_counter() - t0)


def lightning_loop(
    images: torch.Tensor, bs: int, steps: int, warmup: int, cl: bool, precision: str = "32-true"
) -> float:
    """deepcluster's own path: DeepClusterModule + its in-memory datamodule under a Trainer."""
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from deepcluster.data.base import ImageDataModule

    class Fixed(ImageDataModule):
        def load(self):
            return images, np.zeros(len(images), dtype=np.int64)

    class Clock(Callback):
        t0 = t1 = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == warmup:
                self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.t1 = time.perf_counter()

    torch.manual_seed(0)
    module = DeepClusterModule(CAE("relu"), lr=1e-3, channels_last=cl)
    clock = Clock()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=warmup + steps,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
        use_distributed_sampler=False,
    )
    trainer.fit(module, datamodule=Fixed(batch_size=bs))
    return steps * bs / (clock.t1 - clock.t0)


def flops_per_train_image(bs: int) -> float:
    """Forward + backward FLOPs of one reconstruction step, per image."""
    from torch.utils.flop_counter import FlopCounterMode

    model = _model(False)
    x = torch.rand(bs, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        _, recon = model(x)
        F.mse_loss(recon, x).backward()
    return counter.get_total_flops() / bs


# --- inference and clustering ----------------------------------------------------------
def embed_rate(images: torch.Tensor, batch_size: int = 2048) -> float:  # the config default
    module = DeepClusterModule(_model(False))
    module.embed(images[:batch_size])
    t0 = time.perf_counter()
    module.embed(images, batch_size)
    return len(images) / (time.perf_counter() - t0)


def codes_70k(images: torch.Tensor, steps: int = 150) -> np.ndarray:
    """Realistic codes: a CAE after a few hundred steps (random init codes are too easy)."""
    model = _model(False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(steps):
        x = images[step * 256 % len(images) :][:256].float() / 255
        loss = F.mse_loss(model(x)[1], x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return DeepClusterModule(model).embed(images).numpy()


def kmeans_time(z: np.ndarray, k: int = 10) -> float:
    from deepcluster.clustering.kmeans import kmeans

    return kmeans(z, k, n_init=10, seed=0).seconds


_AGGLO_CODE = """
import json, os, sys, threading, time
import numpy as np
kind, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
z = np.load(path)[:n].astype(np.float64)
if kind == "ward":
    from deepcluster.clustering.ward import ward
else:
    from sklearn.cluster import AgglomerativeClustering
page = os.sysconf("SC_PAGE_SIZE")
def rss():  # resident bytes now
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * page
base, peak, done = rss(), [0], threading.Event()
def sample():  # the peak above `base`, sampled every 5 ms while the clustering runs
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.005)
thread = threading.Thread(target=sample, daemon=True)
thread.start()
t0 = time.perf_counter()
if kind == "ward":
    ward(z, 10)
else:
    AgglomerativeClustering(n_clusters=10, linkage="ward").fit(z)
seconds = time.perf_counter() - t0
done.set(); thread.join()
peak[0] = max(peak[0], rss())
print(json.dumps({"s": seconds, "peak_mb": (peak[0] - base) / 2**20}))
"""


def agglomerative_in_subprocess(kind: str, z_path: Path, n: int) -> dict:
    """Ward ('ward': ours, fastcluster) or scikit-learn's ('sklearn') on the first n codes,
    in a fresh process: seconds and peak RSS above the baseline after imports and data."""
    out = subprocess.run(
        [sys.executable, "-c", _AGGLO_CODE, kind, str(z_path), str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_to_acc(run_dir: Path, target: float) -> float | None:
    """Seconds from the command's start until the run's ACC first reached `target`.

    From the run's own records: metrics.json's history (ACC per epoch, computed with labels
    only to score), run_info.json's elapsed time at each clustering (since training began)
    and its `startup_s` (process start to training start: imports, data, model). A run that
    continued a pretraining run (ckpt_path=…) adds that run's wall time: the two commands
    one after the other.
    """
    metrics = json.loads((run_dir / "metrics.json").read_text())
    info = json.loads((run_dir / "run_info.json").read_text())
    before = 0.0  # a run that continued another (a shared pretraining): that run's time first
    if info.get("resumed_from"):
        parent = Path(info["resumed_from"]).resolve().parent.parent
        parent_info = json.loads((parent / "run_info.json").read_text())
        if parent_info.get("resumed_from"):
            raise SystemExit(f"{parent} itself continued another run: add its time by hand")
        parent_metrics = json.loads((parent / "metrics.json").read_text())
        for entry in parent_metrics["history"]:  # reached already while pretraining?
            if entry.get("acc") is not None and entry["acc"] >= target:
                return time_to_acc(parent, target)
        before = parent_info["wall_s"]
    elapsed = {t["epoch"]: t.get("elapsed_s") for t in info["timings"]}
    for entry in metrics["history"]:
        if entry.get("acc") is not None and entry["acc"] >= target and entry["epoch"] in elapsed:
            return before + elapsed[entry["epoch"]] + info.get("startup_s", 0.0)
    _log(f"{run_dir}: ACC never reached {target}")
    return None


def time_to_acc_entry(spec: str) -> dict:
    """LABEL=RUN_DIR@TARGET → {label, run, target, seconds, machine}."""
    label, rest = spec.split("=", 1)
    run_dir, target = rest.rsplit("@", 1)
    reached = time_to_acc(Path(run_dir), float(target))
    info = json.loads((Path(run_dir) / "run_info.json").read_text())
    machine = info.get("machine") or {}
    return {
        "label": label,
        "run": run_dir,
        "target": float(target),
        "seconds": None if reached is None else round(reached, 1),
        "machine": machine.get("gpu") or machine.get("cpu"),
    }


# --- main ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("DEEPCLUSTER_DATA"))
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default="bench/results.json")
    p.add_argument("--n-images", type=int, default=None, help="use only the first N (smoke tests)")
    p.add_argument("--no-ward", action="store_true", help="skip the Ward measurements")
    p.add_argument(
        "--no-sklearn-ward",
        action="store_true",
        help="skip scikit-learn's Ward at 20 000 (needs ≈ 3 GB)",
    )
    p.add_argument(
        "--only-time-to-acc",
        action="store_true",
        help="keep the other figures of --out, replace its time-to-accuracy entries",
    )
    p.add_argument(
        "--code-steps",
        type=int,
        default=150,
        help="training steps before the codes k-means and Ward are timed on",
    )
    p.add_argument(
        "--time-to-acc",
        action="append",
        default=[],
        metavar="LABEL=RUN_DIR@TARGET",
        help="a finished run folder: seconds from its command's start until its ACC first "
        "reached TARGET (repeatable)",
    )
    args = p.parse_args(argv)
    if args.only_time_to_acc:  # the throughput figures need an idle machine; these do not
        return rewrite_time_to_acc(Path(args.out), args.time_to_acc)
    bs, steps, warm = args.batch_size, args.steps, args.warmup

    info = cpu_info()
    info["sgemm_gflops"] = round(sgemm_gflops(), 1)
    info["native_bf16"] = cpu_has_native_bf16()
    # emulated bf16 (no AMX or AVX-512 BF16) runs ≈ 16× slower: a few steps measure it
    bf16_steps, bf16_warm = (steps, warm) if info["native_bf16"] else (max(2, steps // 10), 1)
    _log(f"cpu: {info}")
    images, source = load_images(args.data_root)
    if args.n_images:
        images = images[: args.n_images]
    _log(f"data: {source}, {len(images)} images")

    runs: dict[str, list[float]] = {}
    for rep in range(args.repeats):
        for name, fn in (
            ("bare", lambda: bare_loop(images, bs, steps, warm, False)),
            ("bare_cl", lambda: bare_loop(images, bs, steps, warm, True)),
            ("ours", lambda: lightning_loop(images, bs, steps, warm, False)),
            ("ours_cl", lambda: lightning_loop(images, bs, steps, warm, True)),
            ("bare_bf16", lambda: bare_loop(images, bs, bf16_steps, bf16_warm, False, True)),
            (
                "ours_bf16",
                lambda: lightning_loop(images, bs, bf16_steps, bf16_warm, False, "bf16-mixed"),
            ),
            ("peer_w0", lambda: peer_loop(args.data_root, bs, steps, warm, 0)),
            ("peer_w2", lambda: peer_loop(args.data_root, bs, steps, warm, 2)),
        ):
            value = fn()
            if value is not None:
                runs.setdefault(name, []).append(value)
                _log(f"repeat {rep}: {name:8s} {value:8.0f} img/s")
    best = {name: max(values) for name, values in runs.items()}
    # the headline ratios compare like with like (FP32 everywhere, as the peer);
    # the bf16 variants (trainer.precision=bf16-mixed) are reported beside them
    ours_key = "ours_cl" if best.get("ours_cl", 0) > best["ours"] else "ours"
    bare_key = "bare_cl" if best.get("bare_cl", 0) > best["bare"] else "bare"
    peer = max(best.get("peer_w0", 0), best.get("peer_w2", 0)) or None
    flops = flops_per_train_image(bs)
    train = best[ours_key]

    embed = embed_rate(images)
    _log(f"embedding: {embed:.0f} img/s")
    z = codes_70k(images, args.code_steps)
    km = kmeans_time(z)
    _log(f"k-means 70k: {km:.2f} s")
    agglo: dict[str, dict] = {}
    if not args.no_ward:
        z_path = Path(args.out).with_name("codes_70k.npy")
        z_path.parent.mkdir(parents=True, exist_ok=True)
        np.save(z_path, z)
        small = min(20_000, len(z))  # 20 000, or fewer with --n-images
        jobs = [("ward", small), ("ward", len(z))] if len(z) > small else [("ward", small)]
        if not args.no_sklearn_ward:
            jobs.append(("sklearn", small))
        try:
            for kind, n in jobs:
                key = f"{'sklearn_ward' if kind == 'sklearn' else 'ward'}_{n // 1000}k"
                agglo[key] = agglomerative_in_subprocess(kind, z_path, n)
                _log(f"{key}: {agglo[key]['s']:.1f} s, {agglo[key]['peak_mb']:.0f} MB")
        finally:
            z_path.unlink(missing_ok=True)

    results = {
        "machine": info,
        "data": source,
        "batch_size": bs,
        "steps": steps,
        "bf16_steps": bf16_steps,
        "train_img_per_s": round(train, 1),
        "train_path": ours_key,
        "train_variants_img_per_s": {k: round(v, 1) for k, v in best.items()},
        "peer_dataloader_img_per_s": None if peer is None else round(peer, 1),
        "bare_loop_img_per_s": round(best[bare_key], 1),
        "train_vs_peer": None if peer is None else round(train / peer, 3),
        "train_vs_bare": round(train / best[bare_key], 3),
        "train_bf16_img_per_s": round(best["ours_bf16"], 1) if "ours_bf16" in best else None,
        "train_bf16_vs_peer": (
            round(best["ours_bf16"] / peer, 3) if peer and "ours_bf16" in best else None
        ),
        "flops_per_train_image": round(flops),
        "train_gflops": round(train * flops / 1e9, 1),
        "peak_gflops_assumed": round(info["peak_gflops"], 1),
        "peak_fraction": round(train * flops / 1e9 / info["peak_gflops"], 3),
        "embed_img_per_s": round(embed, 1),
        "kmeans_70k_s": round(km, 3),
        "self_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    for key, value in agglo.items():
        results[f"{key}_s"] = round(value["s"], 2)
        results[f"{key}_peak_mb"] = round(value["peak_mb"], 1)
    if "sklearn_ward_20k" in agglo and "ward_20k" in agglo:  # the full-size run only
        ours, theirs = agglo["ward_20k"], agglo["sklearn_ward_20k"]
        results["sklearn_vs_ward_20k_time"] = round(theirs["s"] / ours["s"], 2)
        results["sklearn_vs_ward_20k_memory"] = round(
            theirs["peak_mb"] / max(ours["peak_mb"], 1), 1
        )
    specs = args.time_to_acc or previous_time_to_acc(Path(args.out))
    results["time_to_accuracy"] = [time_to_acc_entry(spec) for spec in specs]
    write(results, Path(args.out))
    return results


def previous_time_to_acc(out: Path) -> list[str]:
    """The time-to-accuracy entries of the last results, as specs (read again from their run
    folders): rerunning the throughput figures without --time-to-acc keeps them."""
    if not out.is_file():
        return []
    entries = json.loads(out.read_text()).get("time_to_accuracy", [])
    return [f"{e['label']}={e['run']}@{e['target']}" for e in entries]


def write(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    out.with_suffix(".md").write_text(text + "\n")
    print(text)
    _log(f"wrote {out} and {out.with_suffix('.md')}")


def rewrite_time_to_acc(out: Path, specs: list[str]) -> dict:
    results = json.loads(out.read_text())
    results.pop("time_to_acc90_s", None)  # 0.1.0's single entry, now one of the list
    results.pop("time_to_acc90_run", None)
    results["time_to_accuracy"] = [time_to_acc_entry(spec) for spec in specs]
    write(results, out)
    return results


def table(r: dict) -> str:
    m = r["machine"]
    rows = [
        ("machine (every figure below)", f"{m['model']} ({m['isa']}), {m['threads']} threads"),
        (
            "training, deepcluster (Lightning)",
            f"{r['train_img_per_s']:.0f} img/s ({r['train_path']})",
        ),
        ("training, bare in-memory loop", f"{r['bare_loop_img_per_s']:.0f} img/s"),
        ("training, torchvision DataLoader peer", f"{r['peer_dataloader_img_per_s']} img/s"),
        ("deepcluster / bare", f"{r['train_vs_bare']:.3f}×"),
        ("deepcluster / peer", f"{r['train_vs_peer']}×"),
        (
            "training, deepcluster bf16-mixed"
            + (
                " (native bf16)"
                if m.get("native_bf16", True)
                else " (emulated: no AMX/AVX512-BF16)"
            ),
            f"{r['train_bf16_img_per_s']} img/s = {r['train_bf16_vs_peer']}× the FP32 peer",
        ),
        ("FLOPs per training image", f"{r['flops_per_train_image'] / 1e6:.1f} MFLOP"),
        (
            "achieved / assumed peak",
            f"{r['train_gflops']} / {r['peak_gflops_assumed']} GFLOP/s = {r['peak_fraction']:.3f}",
        ),
        ("embedding pass", f"{r['embed_img_per_s']:.0f} img/s"),
        ("k-means, N=70 000, d=10, n_init=10", f"{r['kmeans_70k_s']:.2f} s"),
    ]
    for key, label in (
        ("ward_20k", "Ward (fastcluster), N=20 000, d=10"),
        ("ward_70k", "Ward (fastcluster), N=70 000, d=10"),
        ("sklearn_ward_20k", "scikit-learn Ward, N=20 000, d=10"),
    ):
        if f"{key}_s" in r:
            rows.append((label, f"{r[f'{key}_s']:.1f} s, peak +{r[f'{key}_peak_mb']:.0f} MB"))
    if "sklearn_vs_ward_20k_time" in r:
        rows.append(
            (
                "scikit-learn / ours at 20 000",
                f"{r['sklearn_vs_ward_20k_time']}× time, {r['sklearn_vs_ward_20k_memory']}× memory",
            )
        )
    for t in r.get("time_to_accuracy", []):
        seconds = "not reached" if t["seconds"] is None else f"{t['seconds']:.0f} s"
        rows.append((f"time to ACC {t['target']}: {t['label']}", f"{seconds} ({t['machine']})"))
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"| {a:<{width}} | {b} |" for a, b in rows)


if __name__ == "__main__":
    main()
