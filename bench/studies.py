"""The study tables of RESULTS.md, written from the run folders (never by hand).

    python bench/studies.py            → results/studies.md, results/studies.json

A study is a folder of runs named <variant>-s<seed>[b] under results/runs/. Each row comes from
the run's own metrics.json and run_info.json (command, machine, wall time); each variant's
summary is the mean ± sd over its seeds, and the seeds' agreement (mean pairwise adjusted Rand
index of their predictions.csv, where the folders keep them). Labels only score: no row is
chosen by its ACC.

Three columns need files a clone does not have (codes.npy, predictions.csv and, for the
oldest runs, .hydra/overrides.yaml are not committed): the code silhouette, the seed
agreement and the command. Where the files are gone, the values the last writer recorded in
results/studies.json are kept (the agreement only while the variant has the same runs), so
the script can be run again anywhere without emptying them.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "results" / "runs"
ALSO = {"sigmoid": ["schedule/constant-s0"]}  # runs another study's table shows too
PER_EPOCH = {"schedule"}  # studies that also get their loss and ACC epoch by epoch
STUDIES = {  # folder → what it measures
    "digits_default": "The default job on the bundled digits (issue 11): variants × seeds",
    "sigmoid": "Sigmoid vs ReLU on MNIST-full, 10 reconstruction epochs (issue 11)",
    "schedule": "Reconstruction schedules on MNIST-full, 10 epochs (issue 14)",
    "augment": "Augmentation-invariant codes (issue 15)",
    "dense_ae": "N2D's dense autoencoder (model=mlp) before UMAP + GMM (issue 15)",
    "tta": "Time to accuracy on MNIST-full, schedule=fast (issue 14)",
    "own_images": "Your own images (issue 13)",
}


def recorded_rows() -> dict[str, dict]:
    """The rows results/studies.json holds now, by run folder."""
    try:
        studies = json.loads((ROOT / "results" / "studies.json").read_text())
    except (OSError, ValueError):
        return {}
    return {r["run"]: r for rows in studies.values() for r in rows}


RECORDED = recorded_rows()


def command(run_dir: Path, info: dict) -> str:
    if info.get("command"):
        return info["command"]
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if overrides.is_file():  # runs from before run_info.json recorded the command
        task = [str(o) for o in OmegaConf.load(overrides)]
        return " ".join(["deepcluster", *task, f"hydra.run.dir={run_dir.relative_to(ROOT)}"])
    return RECORDED.get(str(run_dir.relative_to(ROOT)), {}).get("command") or "?"


def code_silhouette(run_dir: Path) -> float | None:
    """Silhouette of the final clusters in the code space (codes.npy), whatever space they were
    found in (UMAP or the codes): one label-free yardstick across variants."""
    codes, pred = run_dir / "codes.npy", run_dir / "predictions.csv"
    if not (codes.is_file() and pred.is_file()):
        return RECORDED.get(str(run_dir.relative_to(ROOT)), {}).get("code_silhouette")
    import numpy as np
    import pandas as pd

    from deepcluster.clustering.label_free import silhouette

    return silhouette(np.load(codes), pd.read_csv(pred)["cluster"].to_numpy())


def agreement(rows: list[dict]) -> float | None:
    """Seed agreement of a variant's runs (label-free: the clusters, not the labels)."""
    files = [ROOT / r["run"] / "predictions.csv" for r in rows]
    if len(files) < 2:
        return None
    if not all(f.is_file() for f in files):  # recorded over the same runs, or unknown
        runs = sorted(r["run"] for r in rows)
        recorded = [RECORDED.get(run, {}) for run in runs]
        if all(r.get("agreement_runs") == runs for r in recorded):
            return recorded[0].get("seed_agreement")
        return None
    import pandas as pd

    from deepcluster.clustering.label_free import seed_agreement

    parts = [pd.read_csv(f).sort_values("index")["cluster"].to_numpy() for f in files]
    return seed_agreement(parts)


def row(run_dir: Path) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    info = json.loads((run_dir / "run_info.json").read_text())
    losses = [h["loss"] for h in m["history"] if h.get("loss") is not None]
    match = re.match(r"(.*)-s(\d+)[a-z]?(-.*)?$", run_dir.name)  # s0b: seed 0 run again
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
        "code_silhouette": code_silhouette(run_dir),
        "baseline_acc": (m.get("baseline") or {}).get("acc"),
        "stop_reason": m.get("stop_reason"),
        "wall_s": info.get("wall_s"),
        "machine": machine_label(machine.get("gpu") or machine.get("cpu") or "?"),
        "command": command(run_dir, info),
    }


def machine_label(text: str) -> str:
    """Runs of the first hours of 0.2.0 wrote the ISA flags run together."""
    return text.replace("(AMXAVX-512)", "(AVX-512, AMX)")


def fmt(v, digits=4) -> str:
    return "–" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


# per-run columns: (header, key, digits); the summary averages the numeric ones per variant
COLUMNS = [
    ("seed", "seed", 0),
    ("epochs", "epochs", 0),
    ("final loss", "final_loss", 5),
    ("ACC", "acc", 4),
    ("NMI", "nmi", 4),
    ("silhouette", "silhouette", 3),
    ("code silhouette", "code_silhouette", 3),
    ("pixels ACC", "baseline_acc", 4),
    ("wall s", "wall_s", 0),
]
AVERAGED = [
    ("NMI", "nmi", 4),
    ("silhouette", "silhouette", 3),
    ("code silhouette", "code_silhouette", 3),
    ("final loss", "final_loss", 5),
]


def summary(rows: list[dict]) -> list[str]:
    out = [
        "| variant | runs | ACC mean ± sd (min–max) | seed agreement (ARI) | "
        + " | ".join(f"{h} mean" for h, _, _ in AVERAGED)
        + " |",
        "|---|---|---|---|" + "---|" * len(AVERAGED),
    ]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == variant]
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
        means = []
        for _, key, digits in AVERAGED:
            vals = [r[key] for r in rs if r[key] is not None]
            means.append(fmt(statistics.fmean(vals) if vals else None, digits))
        value = agreement(rs)
        for r in rs:  # recorded with every row: a clone without predictions.csv keeps it
            r["seed_agreement"] = value
            r["agreement_runs"] = sorted(x["run"] for x in rs) if value is not None else None
        agree = fmt(value, 3)
        out.append(f"| {variant} | {len(rs)} | {acc} | {agree} | " + " | ".join(means) + " |")
    return out


def table(rows: list[dict]) -> list[str]:
    out = [
        "| run | " + " | ".join(h for h, _, _ in COLUMNS) + " | stop | machine | command |",
        "|---|" + "---|" * (len(COLUMNS) + 3),
    ]
    for r in rows:
        cells = [
            fmt(round(r[key]) if not digits and r[key] is not None else r[key], digits)
            for _, key, digits in COLUMNS
        ]
        out.append(
            f"| {r['variant']} | "
            + " | ".join(cells)
            + f" | {(r['stop_reason'] or '')[:24]} | {r['machine']} | `{r['command']}` |"
        )
    return out


def per_epoch(rows: list[dict]) -> list[str]:
    """Each run's reconstruction loss and ACC after every clustered epoch (ACC only scores)."""
    runs = [(r, json.loads((ROOT / r["run"] / "metrics.json").read_text())) for r in rows]
    runs = [(r, m["history"]) for r, m in runs]
    epochs = sorted({h["epoch"] for _, history in runs for h in history})
    out = [
        "Epoch by epoch: reconstruction loss / ACC (k-means on the codes).",
        "",
        "| run | seed | machine | " + " | ".join(str(e) for e in epochs) + " |",
        "|---|---|---|" + "---|" * len(epochs),
    ]
    for r, history in runs:
        at = {h["epoch"]: h for h in history}
        cells = [
            f"{fmt(at[e].get('loss'), 5)} / {fmt(at[e].get('acc'), 4)}" if e in at else "–"
            for e in epochs
        ]
        out.append(f"| {r['variant']} | {r['seed']} | {r['machine']} | " + " | ".join(cells) + " |")
    return out


def sigmoid_study(path: Path) -> list[str]:
    """The table of bench/sigmoid_study.py's output, if it ran."""
    if not path.is_file():
        return []
    study = json.loads(path.read_text())
    machine = machine_label(study["machine"]["cpu"])
    out = [
        "## The Sigmoid plateau (bench/sigmoid_study.py)",
        "",
        f"`python bench/sigmoid_study.py` on {machine}, one thread. Signal: std over images of "
        "the reconstruction at initialisation; then the reconstruction loss per epoch over the "
        "mean-image loss (1.0: the output ignores the input).",
        "",
        "| data | batch | variant | signal at init | loss / mean-image loss per epoch |",
        "|---|---|---|---|---|",
    ]
    for r in study["runs"]:
        losses = " ".join(f"{v:.3f}" for v in r["loss_over_mean_image"])
        out.append(
            f"| {r['data']} | {r['batch_size']} | {r['variant']} | "
            f"{r['output_signal_at_init']:.1e} | {losses} |"
        )
    return [*out, ""]


def main() -> None:
    text = [
        "# Study tables",
        "",
        "Written by `python bench/studies.py` from `results/runs/`; "
        "do not edit by hand. Each run's exact command is in its row; `silhouette` is "
        "measured where the run clustered (UMAP or the codes), `code silhouette` always in "
        "the code space; `seed agreement` is the mean adjusted Rand index between the seeds' "
        "partitions (label-free; the default job's rule).",
        "",
    ]
    everything = {}
    for folder, title in STUDIES.items():
        dirs = sorted(p.parent for p in (RUNS / folder).glob("*/run_info.json"))  # finished
        dirs += [
            RUNS / extra
            for extra in ALSO.get(folder, [])
            if (RUNS / extra / "run_info.json").is_file()
        ]
        if not dirs:
            continue
        rows = [row(d) for d in dirs]
        everything[folder] = rows
        text += [f"## {title}", "", *summary(rows), "", *table(rows), ""]
        if folder in PER_EPOCH:
            text += [*per_epoch(rows), ""]
    text += sigmoid_study(ROOT / "results" / "sigmoid_study.json")
    out = ROOT / "results"
    (out / "studies.md").write_text("\n".join(text) + "\n")
    (out / "studies.json").write_text(json.dumps(everything, indent=2) + "\n")
    print(f"wrote {out / 'studies.md'}: {sum(len(v) for v in everything.values())} runs")


if __name__ == "__main__":
    main()
