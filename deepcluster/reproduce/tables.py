"""The comparison, written from the run folders: results/reproduction.json and .md, and the
ACC-vs-k and ReLU-vs-Sigmoid figures of method A's paper."""

from __future__ import annotations

import json
import statistics
from datetime import datetime, timedelta
from pathlib import Path

from deepcluster.reproduce import runner
from deepcluster.reproduce.settings import Setting


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample sd; one seed has no spread (None)."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def seeds_on_disk(setting: Setting, root: Path, quick: bool) -> set[int]:
    """The seeds of every finished run of `setting` under root, whatever command ran them."""
    prefix = setting.name.replace("/", "-") + "-s"
    found = set()
    for path in root.glob(f"{prefix}*/metrics.json"):
        seed = path.parent.name[len(prefix) :].removesuffix("-quick")
        if seed.isdigit() and path.parent.name == setting.run_key(int(seed), quick):
            found.add(int(seed))
    return found


def _wall(info: dict, folder: Path) -> float | None:
    """A part's wall seconds, earlier processes of a resumed run included; None: unknown."""
    if "wall_s_total" in info:
        return info["wall_s_total"]
    resumed = info.get("resumed_from")  # run_info.json before 0.3: this process only
    if resumed and Path(resumed).parent.parent.name == folder.name:  # its own checkpoints
        return None  # (by name: the folder may have been elsewhere when it ran)
    return info.get("wall_s")


def pretraining_record(pre_dir: Path, info: dict) -> dict:
    """The run_info.json of the pretraining a run continued. A pretraining trained again (a
    fresh clone has no checkpoint) keeps its earlier records in previous*/: a run is credited
    to the one it names (`source_finished_at`), else to the last one that ended before it
    started, by their `finished_at`; a run without one (older) to the first unstamped record.
    Without either, the folder's own."""
    records = [_read(pre_dir / "run_info.json")]
    earlier = sorted(  # previous, previous.2, …, previous.10: the order they were set aside
        pre_dir.glob("previous*"), key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else 1
    )
    records += [_read(p / "run_info.json") for p in earlier]
    records = [r for r in records if r]
    if not records:
        return {}
    source = info.get("source_finished_at")  # recorded by the run itself: exact
    if source is not None:
        exact = [r for r in records if r.get("finished_at") == source]
        if exact:
            return exact[0]
    unstamped = next((r for r in records if "finished_at" not in r), records[0])
    if "finished_at" not in info:
        return unstamped
    started = datetime.fromisoformat(info["finished_at"]) - timedelta(seconds=info.get("wall_s", 0))
    before = [r for r in records if "finished_at" in r]
    before = [r for r in before if datetime.fromisoformat(r["finished_at"]) <= started]
    if before:
        return max(before, key=lambda r: datetime.fromisoformat(r["finished_at"]))
    return unstamped  # older than every stamped record


def _trained_epochs(m: dict) -> int:
    """Reconstruction epochs behind a run, from its own history (what its checkpoint had)."""
    last = m["history"][-1] if m["history"] else {}
    if last.get("phase") == "cluster_only":
        return int(last["epoch"]) + 1
    return sum(h.get("phase") == "pretrain" for h in m["history"])


# what a run's metrics.json records of itself, against its setting's value
RECORDED = ("dataset", "split", "model", "activation", "k", "clusterer", "seed")


def not_as_published(
    setting: Setting, seed: int, root: Path, quick: bool, metrics: dict
) -> list[str]:
    """What a finished run changed from the published setting: overrides given to it or to
    its pretraining (their plan.json) beyond the setting's own, a dataset size that is not
    the setting's (a `dataset.limit`, a smaller download), and anything its metrics.json
    records that is not the setting's (a folder copied or renamed, a command never
    recorded)."""
    pre, run = runner.plan([setting], [seed], root, quick, "cpu", [])
    changed = []
    for job in (pre, run):
        changed += job.extra_overrides()
    expected = runner.N_IMAGES[(setting.dataset, setting.split)]
    n = metrics.get("n")
    if n is not None and n != expected:  # (None: a metrics.json without it)
        changed.append(f"{n} images, not {expected}")
    wanted = {key: getattr(setting, key) for key in RECORDED if key != "seed"} | {"seed": seed}
    for key, value in wanted.items():
        if metrics.get(key) is not None and metrics[key] != value:
            changed.append(f"its metrics.json has {key}={metrics[key]}, not {value}")
    return sorted(set(changed))


def collect(settings: list[Setting], seeds: list[int], root: Path, quick: bool) -> list[dict]:
    """One entry per setting, over the seeds asked for and every seed found on disk."""
    entries = []
    for s in settings:
        runs, planned = [], sorted(set(seeds) | seeds_on_disk(s, root, quick))
        for seed in planned:
            run_dir = root / s.run_key(seed, quick)
            if not (run_dir / "metrics.json").is_file():
                continue
            m = json.loads((run_dir / "metrics.json").read_text())
            info = _read(run_dir / "run_info.json")
            pre_dir = root / "pretrain" / s.pretrain_key(seed, quick)
            pre = pretraining_record(pre_dir, info)
            trained = _trained_epochs(m)
            refined = sum(h.get("phase") == "refine" for h in m["history"])
            walls = [_wall(pre, pre_dir), _wall(info, run_dir)]
            runs.append(
                {
                    "seed": seed,
                    "acc": m["acc"],
                    "nmi": m["nmi"],
                    "epochs": f"{trained}+{refined}" if s.refine else str(trained),
                    "stop_reason": m["stop_reason"],
                    "dir": str(run_dir),
                    # the pretraining and the run may have run on different machines
                    "machine": pre.get("machine") or {},
                    "run_machine": info.get("machine") or {},
                    "wall_s": walls[0] + walls[1] if None not in walls else None,
                    "wall_parts_s": walls,  # pretraining, run; None where unknown
                    "not_as_published": not_as_published(s, seed, root, quick, m),
                }
            )
        # a run that differs from the published setting is listed, not averaged in
        clean = [r for r in runs if not r["not_as_published"]]
        acc, acc_sd = _mean_sd([r["acc"] for r in clean])
        nmi, nmi_sd = _mean_sd([r["nmi"] for r in clean])
        machines = sorted({_machine(r[key]) for r in runs for key in ("machine", "run_machine")})
        entries.append(
            {
                "paper": s.paper,
                "setting": s.name,
                "dataset": s.dataset,
                "split": s.split,
                "k": s.k,
                "activation": s.activation,
                "model": s.model,
                "clusterer": s.clusterer,
                "refine": s.refine,
                "schedule": "quick" if quick else "published",
                # "200+6" before "200+12": by the numbers, not the strings
                "epochs": sorted(
                    {r["epochs"] for r in runs}, key=lambda e: [int(x) for x in e.split("+")]
                ),
                "published": s.published,
                "ours": {
                    "acc_mean": acc,
                    "acc_sd": acc_sd,
                    "nmi_mean": nmi,
                    "nmi_sd": nmi_sd,
                    "seeds": [r["seed"] for r in clean],
                    "seeds_not_as_published": [r["seed"] for r in runs if r not in clean],
                    "runs": runs,
                },
                "seeds_planned": planned,
                "pretrain_epochs_planned": s.pretrain_epochs(quick),
                "machine": machines,
                "commit": sorted(
                    {r[key].get("commit") for r in runs for key in ("machine", "run_machine")}
                    - {None}
                ),
            }
        )
    return entries


def _machine(m: dict) -> str:
    if not m:
        return "unknown"
    threads = m.get("threads")
    return str(m.get("gpu") or f"{m.get('cpu')}, {threads} thread{'s' if threads != 1 else ''}")


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds / 60:.{0 if seconds >= 600 else 1}f}"


def _run_machines(r: dict) -> str:
    pre, run = _machine(r["machine"]), _machine(r["run_machine"])
    return pre if pre == run else f"pretraining: {pre}; run: {run}"


def _fmt(mean, sd, n: int) -> str:
    if mean is None:
        return "–"
    return f"{mean:.4f}" if n == 1 else f"{mean:.4f} ± {sd:.4f}"  # one seed has no spread


def markdown(entries: list[dict]) -> str:
    lines = [
        "| setting | k | activation | published ACC / NMI | ours ACC | ours NMI | seeds | "
        "epochs | machine |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    # each published figure is marked with its source: [1], [2], … below the table
    sources = list(dict.fromkeys(e["published"]["source"] for e in entries if e["published"]))
    for e in entries:
        pub = e["published"] or {}
        published = (
            "–"
            if not pub
            else f"{pub['acc']:.4f} / "
            + ("–" if pub.get("nmi") is None else f"{pub['nmi']:.4f}")
            + f" [{sources.index(pub['source']) + 1}]"
        )
        o = e["ours"]
        planned = len(e["seeds_planned"])
        n = len(o["seeds"])
        seeds = f"{n} of {planned}"
        changed = len(o.get("seeds_not_as_published", []))
        if changed:
            seeds += f" (+{changed} †)"
        lines.append(
            f"| {e['setting']}{' †' if changed else ''} | {e['k']} | {e['activation']} | "
            f"{published} | "
            f"{_fmt(o['acc_mean'], o['acc_sd'], n)} | {_fmt(o['nmi_mean'], o['nmi_sd'], n)} | "
            f"{seeds} | {_epochs(e)} | "
            f"{'; '.join(e['machine']) or '–'} |"
        )
    lines += [
        "",
        "Published figures: "
        + "; ".join(f"[{i}] {source}" for i, source in enumerate(sources, 1))
        + ". ACC / NMI: mean ± sd over the seeds that ran as published; epochs: "
        "reconstruction epochs (+ refinement epochs), marked when fewer than the schedule's; "
        "machine: every machine that ran a part (pretraining or run). Wall times: ? where a "
        "part's time is unknown (a run_info.json missing, or a resumed run whose earlier "
        "processes were not timed). †: runs that differ from the published setting (their "
        "overrides or dataset size: the last column of Every run), listed there and left out "
        "of the mean.",
    ]
    return "\n".join(lines + per_seed(entries)) + "\n"


def per_seed(entries: list[dict]) -> list[str]:
    """Every run behind the table, one row per seed, so nobody copies figures by hand."""
    lines = [
        "",
        "## Every run",
        "",
        "| setting | seed | ACC | NMI | epochs | stopped | wall, min (pretraining + run) | "
        "machine | folder | not as published |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        for r in e["ours"]["runs"]:
            pre_s, run_s = r.get("wall_parts_s", [None, None])
            minutes = f"{_minutes(pre_s)} + {_minutes(run_s)}"
            stopped = r["stop_reason"].split(":")[0].replace("cluster_only", "no refinement")
            lines.append(
                f"| {e['setting']} | {r['seed']} | {r['acc']:.4f} | {r['nmi']:.4f} | "
                f"{r['epochs']} | {stopped} | {minutes} | {_run_machines(r)} | "
                f"`{r['dir']}` | {', '.join(r['not_as_published']) or '–'} |"
            )
    return lines if len(lines) > 5 else []  # a header alone says nothing


def _epochs(e: dict) -> str:
    if not e["epochs"]:
        return "–"
    ran = ", ".join(e["epochs"])
    trained = min(int(x.split("+")[0]) for x in e["epochs"])
    short = trained < e["pretrain_epochs_planned"]
    return ran + (f" (fewer: {e['pretrain_epochs_planned']} planned)" if short else "")


def figures(entries: list[dict], out_dir: Path, quick: bool = False) -> list[Path]:
    """Method A's figures: ACC vs k (ReLU and Sigmoid side by side), one per dataset."""
    from deepcluster import plots

    made = []
    for dataset in ("mnist", "fashion_mnist"):
        # one row per seed in the mean: the bars show mean, sd and how many seeds ran
        rows = [
            {"status": "ok", "k": e["k"], "activation": e["activation"], "acc": run["acc"]}
            for e in entries
            if e["setting"].startswith("A/") and e["dataset"] == dataset
            for run in e["ours"]["runs"]
            if not run["not_as_published"] and run["acc"] is not None
        ]
        if rows:
            path = out_dir / f"method_a_{dataset}_acc_vs_k{'_quick' if quick else ''}.png"
            made.append(
                plots.acc_vs_k(
                    rows,
                    path,
                    f"method A on {dataset}: ACC vs k, ReLU vs Sigmoid (mean over seeds)",
                )
            )
    return made


def write(entries: list[dict], out_dir: Path, quick: bool = False) -> tuple[Path, Path]:
    """results/reproduction.{json,md} (reproduction_quick.* for the short schedules)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "reproduction_quick" if quick else "reproduction"
    js, md = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    js.write_text(json.dumps(entries, indent=2) + "\n")
    pics = figures(entries, out_dir, quick)
    title = "Reproduction of both papers" + (" (the short CPU schedules)" if quick else "")
    text = f"# {title}\n\nWritten by `python -m deepcluster.reproduce` from "
    text += "the run folders; do not edit by hand.\n\n" + markdown(entries)
    text += "".join(f"\n![{p.stem}]({p.name})\n" for p in pics)
    md.write_text(text)
    return js, md
