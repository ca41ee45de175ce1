"""Reproduce both papers' tables: python -m deepcluster.reproduce [options] (or make reproduce).

Runs every published setting — method A: MNIST-full and Fashion-MNIST, k = 5, 10, 15, ReLU and
Sigmoid; method B: MNIST-full and MNIST-test; our UMAP/GMM recipe beside them — for N seeds,
seed 0 of everything first. One reconstruction pretraining per (dataset, split, model,
activation, seed) is trained once and continued by every setting that shares it. Stop it any
time: the same command skips what finished and continues what was interrupted. Then writes
results/reproduction.json and .md (published beside ours) and method A's figures.
"""

from __future__ import annotations

import argparse
import fnmatch
import shlex
import sys
from pathlib import Path

from deepcluster.reproduce import runner, tables
from deepcluster.reproduce.settings import SETTINGS


def parse_seeds(text: str) -> list[int]:
    """ "3" → seeds 0, 1, 2; "0,4" → seeds 0 and 4 (each once, in the order given)."""
    if "," in text:
        seeds = [int(s) for s in text.split(",") if s != ""]
        if not seeds or min(seeds) < 0:
            raise argparse.ArgumentTypeError(
                f"--seeds {text}: a list needs seeds >= 0 (e.g. --seeds 0,4 or --seeds 2,)"
            )
        return list(dict.fromkeys(seeds))
    n = int(text)
    if n < 1:
        alone = f" (seed {n} alone: --seeds {n},)" if n == 0 else ""
        raise argparse.ArgumentTypeError(
            f"--seeds {text}: a count needs at least one seed{alone}; "
            "give a count >= 1 (3: seeds 0-2) or a list of seeds >= 0 (0,4)"
        )
    return list(range(n))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m deepcluster.reproduce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="settings to run, shell patterns on their names (A/mnist/k10/relu, "
        "B/mnist_test, N2D/*); repeatable. Default: all",
    )
    p.add_argument(
        "--seeds",
        type=parse_seeds,
        default=[0, 1, 2],
        help="a count (3: seeds 0-2, the default) or a list (0,4)",
    )
    p.add_argument("--quick", action="store_true", help="the short CPU schedules (*_quick)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its time only")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="runs side by side (default 1). On a GPU 4-6 share it well; on CPUs, give "
        "each run its own cores (OMP_NUM_THREADS)",
    )
    p.add_argument(
        "--root",
        type=Path,
        default=Path("results"),
        help="where runs (ROOT/runs) and tables (ROOT) go; default: results",
    )
    p.add_argument("--tables-only", action="store_true", help="rewrite the tables, run nothing")
    p.add_argument("overrides", nargs="*", help="extra overrides for every run (e.g. data.root=…)")
    args = p.parse_args(argv)

    chosen = [
        s
        for s in SETTINGS
        if not args.only or any(fnmatch.fnmatch(s.name, pat) for pat in args.only)
    ]
    # every pattern must match: a typo (B/mnsit) beside a good one would drop a setting quietly
    unmatched = [
        pat for pat in args.only or [] if not any(fnmatch.fnmatch(s.name, pat) for s in SETTINGS)
    ]
    if unmatched:
        print(
            f"error: no setting matches --only {', '.join(unmatched)}; settings: "
            + ", ".join(s.name for s in SETTINGS),
            file=sys.stderr,
        )
        return 2
    runs = args.root / "runs"
    jobs = runner.plan(chosen, args.seeds, runs, args.quick, args.device, args.overrides)
    todo = [j for j in jobs if not j.done]
    hours = sum(j.remaining_s() for j in todo) / 3600
    print(
        f"{len(chosen)} settings × {len(args.seeds)} seeds: {len(jobs)} runs, {len(todo)} to "
        f"do, ≈ {hours:.1f} h on "
        + ("one GPU (goal figures)" if args.device == "gpu" else "2 CPU cores")
    )
    if args.dry_run:
        parent_of = runner.parents(jobs)
        for job in todo:
            holder = job.held_by()
            note = f"being trained now by process {holder}" if holder else None
            if note is None and not job.same_run():
                note = "refused: its folder holds a run started with other settings"
            print(
                shlex.join(runner.command(job, parent_of.get(id(job)))[2:]),
                f"  # {note or f'≈ {job.remaining_s() / 60:.0f} min'}",
            )
        return 0
    failed = [] if args.tables_only else runner.execute(jobs, at_once=max(1, args.jobs))
    # the tables show the whole reproduction (every setting, seeds 0-2 and those asked for),
    # what is not run yet marked so: a partial command never hides earlier results
    seeds = sorted(set(args.seeds) | {0, 1, 2})
    entries = tables.collect(SETTINGS, seeds, runs, args.quick)
    js, md = tables.write(entries, args.root, args.quick)
    print(f"tables: {js}, {md}" + (f"; {len(failed)} runs failed" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
