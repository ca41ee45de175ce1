"""The study tables of RESULTS.md, written from the run folders (never by hand).

    python bench/studies.py            → results/studies.md, results/studies.json

A study is a folder of runs named <variant>-s<seed> under results/runs/. Each row comes from
the run's own metrics.json and run_info.json (command, machine, wall time); each variant's
summary is the mean ± sd over its seeds. Labels only score: no row is chosen by its ACC.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "results" / "runs"
STUDIES = {  # folder → what it measures
    "digits_default": "The default job on the bundled digits (issue 11): variants × seeds 0-4",
    "sigmoid": "Sigmoid vs ReLU on MNIST-full, 10 reconstruction epochs (issue 11)",
    "schedule": "Reconstruction schedules on MNIST-full, 10 epochs (issue 14)",
    "augment": "Augmentation-invariant codes (issue 15)",
    "own_images": "Your own images (issue 13)",
}


def command(run_dir: Path, info: dict) -> str:
    if info.get("command"):
        return info["command"]
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if overrides.is_file():  # runs from before run_info.json recorded the command
        task = [str(o) for o in OmegaConf.load(overrides)]
        return " ".join(["deepcluster", *task, f"hydra.run.dir={run_dir.relative_to(ROOT)}"])
    return "?"


def row(run_dir: Path) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    info = json.loads((run_dir / "run_info.json").read_text())
    losses = [h["loss"] for h in m["history"] if h.get("loss") is not None]
    match = re.match(r"(.*)-s(\d+)(-.*)?$", run_dir.name)
    variant = match.group(1) + (match.group(3) or "") if match else run_dir.name
    machine = info.get("machine") or {}
    return {
        "run": str(run_dir.relative_to(ROOT)),
        "variant": variant,
        "seed": m.get("seed"),
        "epochs": m["epochs"],
        "final_loss": losses[-1] if losses else None,
        "acc": m.get("acc"),
        "nmi": m.get("nmi"),
        "silhouette": m.get("silhouette"),
        "baseline_acc": (m.get("baseline") or {}).get("acc"),
        "stop_reason": m.get("stop_reason"),
        "wall_s": info.get("wall_s"),
        "machine": machine.get("gpu") or machine.get("cpu") or "?",
        "command": command(run_dir, info),
    }


def fmt(v, digits=4) -> str:
    return "–" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def summary(rows: list[dict]) -> list[str]:
    out = [
        "| variant | runs | ACC mean ± sd (min–max) | NMI mean | silhouette mean | "
        "final loss mean |",
        "|---|---|---|---|---|---|",
    ]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == variant]

        def mean(key, rs=rs):
            vals = [r[key] for r in rs if r[key] is not None]
            return statistics.fmean(vals) if vals else None

        accs = [r["acc"] for r in rs if r["acc"] is not None]
        acc = (
            "–"
            if not accs
            else (
                f"{statistics.fmean(accs):.4f} ± "
                f"{statistics.stdev(accs) if len(accs) > 1 else 0:.4f} "
                f"({min(accs):.4f}–{max(accs):.4f})"
            )
        )
        out.append(
            f"| {variant} | {len(rs)} | {acc} | {fmt(mean('nmi'))} | "
            f"{fmt(mean('silhouette'), 3)} | {fmt(mean('final_loss'), 5)} |"
        )
    return out


def main() -> None:
    text = [
        "# Study tables",
        "",
        "Written by `python bench/studies.py` from `results/runs/`; "
        "do not edit by hand. Each run's exact command is in its row.",
        "",
    ]
    everything = {}
    for folder, title in STUDIES.items():
        dirs = sorted(p.parent for p in (RUNS / folder).glob("*/run_info.json"))  # finished
        if not dirs:
            continue
        rows = [row(d) for d in dirs]
        everything[folder] = rows
        text += [
            f"## {title}",
            "",
            *summary(rows),
            "",
            "| run | seed | epochs | final loss | ACC | NMI | silhouette | pixels ACC | "
            "stop | wall s | machine | command |",
            "|" + "---|" * 12,
        ]
        for r in rows:
            text.append(
                f"| {r['variant']} | {r['seed']} | {r['epochs']} | "
                f"{fmt(r['final_loss'], 5)} | {fmt(r['acc'])} | {fmt(r['nmi'])} | "
                f"{fmt(r['silhouette'], 3)} | {fmt(r['baseline_acc'])} | "
                f"{(r['stop_reason'] or '')[:24]} | {fmt(r['wall_s'], 0)} | "
                f"{r['machine']} | `{r['command']}` |"
            )
        text.append("")
    out = ROOT / "results"
    (out / "studies.md").write_text("\n".join(text) + "\n")
    (out / "studies.json").write_text(json.dumps(everything, indent=2) + "\n")
    print(f"wrote {out / 'studies.md'}: {sum(len(v) for v in everything.values())} runs")


if __name__ == "__main__":
    main()
