"""What machine produced a figure: CPU model and ISA, threads, GPU, torch, commit."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import cache
from pathlib import Path


@cache
def describe(ran_on_gpu: bool = True) -> dict[str, object]:
    """The machine: CPU model and vector units, cores, torch threads, the GPU (None when there
    is none, or `ran_on_gpu` is False: a CPU run on a machine that has one), torch, commit."""
    import torch

    name, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("", platform.machine(), "x86_64"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    has = set(flags.split())
    vector = "AVX-512" if "avx512f" in has else "AVX2" if "avx2" in has else ""
    isa = ", ".join(x for x in (vector, "AMX" if "amx_tile" in has else "") if x)
    info: dict[str, object] = {
        "cpu": f"{name} ({isa})" if isa else name,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if ran_on_gpu and torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "commit": commit(),
    }
    return info


def commit() -> str | None:
    """The checkout's commit (with -dirty when it has uncommitted changes), if it is one."""
    try:
        root = Path(__file__).resolve().parent.parent
        if not (root / ".git").exists():  # installed, not a checkout: git would find the
            return None  # repository around the environment (a user's project), not ours
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def label(info: dict[str, object] | None = None) -> str:
    info = info or describe()
    return str(info["gpu"]) if info.get("gpu") else f"{info['cpu']}, {info['threads']} threads"


def cpu_has_native_bf16() -> bool:
    """AMX or AVX-512 BF16: the CPUs with bfloat16 arithmetic, where bf16 autocast can pay
    (1.5× the float32 step on an AMX Xeon; AVX-512 BF16 alone is not measured). Without them
    PyTorch emulates bfloat16: the same autocast ran 16× slower than float32 on an AVX2 EPYC
    (bench/results_avx2.md)."""
    import torch

    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # an older torch without the probes: assume the common case
        return False
