"""Aggregate a Hydra multirun folder into a table and the papers' figures.

    python -m deepcluster.report multirun/2026-11-25/15-00-00 [--out DIR] [--no-wandb]

Every job folder (one holding `.hydra/overrides.yaml`) becomes a row: its overrides, its final
ACC / NMI / ARI / purity from `metrics.json`, or `failed` (with the error from `failed.json`)
or `incomplete` (no result: killed or still running), or `unreadable` (a damaged record).
The exit status is 1 when no job finished. Writes `report.md`, `report.csv` and
`figures/{acc_vs_k,acc_vs_epoch,latent_maps}.png` into the folder (or --out), and logs the
table and figures to W&B (offline unless WANDB_MODE=online) as a run of the sweep's group.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

SCORES = ("acc", "nmi", "ari", "purity")
COLUMNS = (
    "job",
    "overrides",
    "status",
    *SCORES,
    "silhouette",  # the score of a sweep without labels
    "epochs",
    "k",
    "activation",
    "dataset",
    "clusterer",
    "manifold",
    "refine",
    "seed",
    "error",
)


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders under a multirun folder, in job order (Hydra numbers them 0, 1, …)."""
    found = [p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")]
    found = [d for d in found if d != sweep_dir]

    def order(d: Path) -> tuple:
        rel = d.relative_to(sweep_dir).parts
        return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in rel)

    return sorted(found, key=order)


def job_overrides(job_dir: Path) -> list[str]:
    """The job's overrides. Of a finished job, those its run recorded (run_info.json's
    command): a later command refused in the same folder has rewritten .hydra/ with its own."""
    if (job_dir / "metrics.json").is_file():
        info, _ = _read_json(job_dir / "run_info.json")
        command = (info or {}).get("command")
        if command:
            try:
                return [w for w in shlex.split(command)[1:] if not w.startswith("hydra")]
            except ValueError:  # a command written before commands were shell-quoted
                pass
    return [str(o) for o in (OmegaConf.load(job_dir / ".hydra" / "overrides.yaml") or [])]


def read_job(job_dir: Path, sweep_dir: Path) -> dict[str, Any]:
    overrides = job_overrides(job_dir)
    row: dict[str, Any] = {
        "job": str(job_dir.relative_to(sweep_dir)),
        "all_overrides": overrides,
        "dir": job_dir,
        "history": [],
    }
    metrics_file, failed_file = job_dir / "metrics.json", job_dir / "failed.json"
    metrics, problem = _read_json(metrics_file)
    if metrics is not None:
        row.update({key: metrics.get(key) for key in COLUMNS if key in metrics})
        row["scores_space"] = metrics.get("scores_space")
        row["history"] = metrics.get("history", [])
        row["status"] = "ok"
        # which refinement, and whether it ran (a schedule that ends inside the pretraining
        # never refines), not the config's on/off flag
        method = metrics.get("refine_method")
        ran = any(h.get("phase") == "refine" for h in row["history"])
        only = any(h.get("phase") == "cluster_only" for h in row["history"])
        if only:  # a trained model clustered: what it was trained with is its source's
            row["refine"] = "cluster only"
        else:
            row["refine"] = "none" if not method else method if ran else f"{method} (not reached)"
    elif problem:  # one damaged file must not hide the rest of the sweep
        row["status"] = "unreadable"
        row["error"] = problem
    elif failed_file.is_file():
        failed, problem = _read_json(failed_file)
        row["status"] = "failed"
        row["error"] = (failed or {}).get("error", "") or problem
    else:
        row["status"] = "incomplete"
        row["error"] = "no metrics.json: the job was killed or is still running"
    if row["status"] != "ok":  # still say which variant it was, from the composed config
        cfg_file = job_dir / ".hydra" / "config.yaml"
        if cfg_file.is_file():
            cfg = OmegaConf.load(cfg_file)
            keys = {
                "k": "k",
                "activation": "activation.name",
                "dataset": "dataset.name",
                "clusterer": "clusterer.name",
                "manifold": "manifold.name",
                "refine": "refine.method",
                "seed": "seed",
            }
            for key, path in keys.items():
                row[key] = OmegaConf.select(cfg, path, default=None, throw_on_missing=False)
            if not OmegaConf.select(cfg, "refine.enabled", default=True):
                row["refine"] = "none"  # refine=none keeps the schema's method, unused
            if row["k"] == "auto":  # chosen at run time: unknown without a result
                row["k"] = None
    return row


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def write_tables(rows: list[dict], out_dir: Path, common: list[str]) -> tuple[Path, Path]:
    md, table = out_dir / "report.md", out_dir / "report.csv"
    frame = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    for column in ("epochs", "k", "seed"):  # whole numbers stay whole beside a failed job's gap
        values = frame[column].dropna()
        if all(isinstance(v, int | float) and float(v).is_integer() for v in values):
            frame[column] = frame[column].astype("Int64")
    frame.to_csv(table, index=False)
    shown = [c for c in COLUMNS if c != "error"]
    lines = [f"Sweep of {len(rows)} jobs; common to all: `{' '.join(common) or '(nothing)'}`", ""]
    lines += ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in shown) + " |" for r in rows]
    spaces = sorted({r["scores_space"] for r in rows if r.get("scores_space")})
    if len(spaces) > 1:  # UMAP's embedding packs clusters: its silhouettes run higher
        lines += [
            "",
            f"The silhouettes were computed in different spaces ({', '.join(spaces)}: "
            "`scores_space` in each metrics.json); compare them only within one space.",
        ]
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        lines += ["", "Jobs without a result:", ""]
        lines += [
            f"- `{r['job']}` ({r['overrides']}): **{r['status']}**: {r.get('error', '')}"
            for r in failed
        ]
    md.write_text("\n".join(lines) + "\n")
    return md, table


def write_figures(rows: list[dict], out_dir: Path) -> dict[str, Path]:
    from deepcluster import plots

    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return {}
    fig_dir = out_dir / "figures"
    # data without labels (a flat folder, an array without them): silhouette instead of ACC
    score = "acc" if any(r.get("acc") is not None for r in ok) else "silhouette"
    figures = {
        "acc_vs_k": plots.acc_vs_k(
            ok,
            fig_dir / "acc_vs_k.png",
            f"final {plots.SCORE_NAMES[score]} per k (mean over seeds)",
            score=score,
            group="variant",
        ),
        "acc_vs_epoch": plots.acc_vs_epoch(
            [(r["overrides"] or r["job"], r["history"]) for r in ok if r["history"]],
            fig_dir / "acc_vs_epoch.png",
            score=score,
        ),
    }
    name = plots.SCORE_NAMES[score]
    maps = [
        (
            f"{r['overrides'] or r['job']}\n{name} {_cell(r.get(score)) or '–'}",
            r["dir"] / "figures" / "latent_map.png",
        )
        for r in ok
    ]
    maps = [(label, png) for label, png in maps if png.is_file()]
    if maps:
        figures["latent_maps"] = plots.image_grid(maps, fig_dir / "latent_maps.png")
    return figures


def log_to_wandb(
    rows: list[dict], figures: dict[str, Path], sweep_dir: Path, out_dir: Path
) -> str | None:
    """One W&B run in the sweep's group holding the table and figures; returns its dir."""
    import wandb

    project = os.environ.get("WANDB_PROJECT", "deepcluster")
    for r in rows:  # the project the jobs logged to
        config = r["dir"] / "config.yaml"
        if config.is_file():
            project = OmegaConf.select(OmegaConf.load(config), "logger.wandb.project") or project
            break
    run = wandb.init(
        project=project,
        group=str(sweep_dir.resolve()),  # as the jobs name it (tracking.sweep_identity)
        job_type="report",
        name=f"report {sweep_dir.name}",
        dir=str(out_dir),
        mode=os.environ.get("WANDB_MODE", "offline"),
    )
    try:
        table = wandb.Table(columns=list(COLUMNS))
        for r in rows:
            table.add_data(*[r.get(c) for c in COLUMNS])
        run.log(
            {
                "report/table": table,
                **{f"report/{k}": wandb.Image(str(p)) for k, p in figures.items()},
            }
        )
        return run.dir
    finally:
        wandb.finish()


def _read_json(path: Path) -> tuple[dict | None, str]:
    """(content, "") or (None, what is wrong with it); (None, "") when there is no file."""
    if not path.is_file():
        return None, ""
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path.name} cannot be read ({exc}); rerun the job or delete the file"
    if not isinstance(content, dict):
        return None, f"{path.name} holds a {type(content).__name__}, not deepcluster's record"
    return content, ""


def build_report(sweep_dir: Path, out_dir: Path | None = None, use_wandb: bool = True) -> dict:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir} is not a folder; pass a multirun/<date>/<time> dir")
    jobs = job_dirs(sweep_dir)
    if not jobs:
        single = (sweep_dir / ".hydra" / "overrides.yaml").is_file()
        raise FileNotFoundError(
            (
                f"{sweep_dir} is a single run, not a sweep: its results are its metrics.json "
                "and figures/. The report compares the jobs of a sweep: pass the folder a "
                "`python -m deepcluster -m …` sweep printed (multirun/<date>/<time>)"
            )
            if single
            else f"no Hydra job folders (with .hydra/overrides.yaml) under {sweep_dir}; "
            "pass the folder a `python -m deepcluster -m …` sweep printed"
        )
    out_dir = Path(out_dir or sweep_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [read_job(j, sweep_dir) for j in jobs]
    # show what varies between jobs; what every job shares goes once above the table
    common = set.intersection(*(set(r["all_overrides"]) for r in rows))
    for r in rows:
        varied = [o for o in r["all_overrides"] if o not in common]
        r["overrides"] = " ".join(varied)
        # acc_vs_k's bars: the jobs' variant besides k (seeds averaged), never a mean over
        # two clusterers or two datasets; k=auto is a variant of its own (its jobs end at
        # some k, and must not be averaged into the bar of the jobs given that k)
        fixed_k = [o for o in varied if re.fullmatch(r"k=\d+", o) or o.startswith("seed=")]
        r["variant"] = " ".join(o for o in varied if o not in fixed_k) or "all"
    md, table = write_tables(rows, out_dir, sorted(common))
    figures = write_figures(rows, out_dir)
    wandb_dir = log_to_wandb(rows, figures, sweep_dir, out_dir) if use_wandb else None
    return {"rows": rows, "markdown": md, "csv": table, "figures": figures, "wandb": wandb_dir}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deepcluster.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sweep_dir", type=Path, help="a multirun/<date>/<time> folder")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: there)")
    parser.add_argument("--no-wandb", action="store_true", help="do not log the table to W&B")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        result = build_report(args.sweep_dir, args.out, use_wandb=not args.no_wandb)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = result["rows"]
    print(result["markdown"].read_text(), end="")
    n_ok = sum(r["status"] == "ok" for r in rows)
    print(
        f"\n{n_ok}/{len(rows)} jobs ok → {result['markdown']}, {result['csv']}"
        + (
            f", {len(result['figures'])} figures in {result['markdown'].parent / 'figures'}"
            if result["figures"]
            else ""
        )
    )
    if n_ok == 0:
        print("error: no job of the sweep finished; see the error column", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
