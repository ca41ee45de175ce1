"""python -m deepcluster.reproduce: the plan, resuming, and the tables it writes."""

import argparse
import json
import os
import shlex
import subprocess
import sys

import pytest

from deepcluster.reproduce import runner, tables
from deepcluster.reproduce.__main__ import main, parse_seeds
from deepcluster.reproduce.settings import SETTINGS


def by_name(*patterns):
    return [s for s in SETTINGS if s.name in patterns]


def test_every_published_setting_is_there():
    names = {s.name for s in SETTINGS}
    for ds in ("mnist", "fashion"):
        for act in ("relu", "sigmoid"):
            assert {f"A/{ds}/k{k}/{act}" for k in (5, 10, 15)} <= names
    assert {"B/mnist", "B/mnist_test", "N2D/mnist", "N2D/fashion", "N2D/mnist_test"} <= names


def test_every_run_has_a_folder_of_its_own():
    """Folder names flatten a setting's "/" to "-": two settings must not share one (the
    second would take the first's metrics.json for its own)."""
    runs = [s.run_key(seed, quick) for s in SETTINGS for seed in (0, 1, 12) for quick in (0, 1)]
    assert len(set(runs)) == len(runs)


def test_seeds_parse_as_a_count_or_a_list():
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("0,4") == [0, 4]
    assert parse_seeds("0,0,4") == [0, 4]  # one folder, one run
    assert parse_seeds("2,") == [2]


@pytest.mark.parametrize("bad", ["-1", "-1,", "0,-3", ","])
def test_negative_or_no_seeds_are_refused_with_what_to_give(bad):
    """`--seeds -1` suggested `--seeds -1,`, which was then accepted as seed -1."""
    with pytest.raises(argparse.ArgumentTypeError, match=r"seeds >= 0") as err:
        parse_seeds(bad)
    assert "alone: --seeds -" not in str(err.value)  # no negative seed suggested


def test_a_job_finished_since_the_plan_is_not_run_again(tmp_path, monkeypatch):
    jobs = runner.plan(by_name("B/mnist_test"), [0, 0], tmp_path, True, "cpu", [])
    ran = []

    def fake_popen(cmd, **kwargs):
        job_dir = next(a.split("=", 1)[1] for a in cmd if a.startswith("hydra.run.dir="))
        ran.append(job_dir)
        (tmp_path / job_dir / "metrics.json").write_text("{}")
        return type("Done", (), {"poll": lambda self: 0, "returncode": 0, "pid": 424242})()

    monkeypatch.setattr(runner.subprocess, "Popen", fake_popen)
    assert runner.execute(jobs, log=lambda *_: None, poll_s=0) == []
    assert len(jobs) == 3 and len(ran) == 2  # the repeated seed-0 run finds it finished


def test_a_run_that_exits_0_without_its_metrics_is_not_ok(tmp_path, monkeypatch):
    """Status 0 is not enough (a run stopped by a signal exited 0 under Lightning): a run
    has finished when its metrics.json is there."""
    (pre,) = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "cpu", [])[:1]
    lines = []

    def exits_0(cmd, **kwargs):
        kwargs["stdout"].write("Received SIGTERM: 15\n")
        return type("Done", (), {"poll": lambda self: 0, "returncode": 0, "pid": 424242})()

    monkeypatch.setattr(runner.subprocess, "Popen", exits_0)
    assert runner.execute([pre], log=lines.append, poll_s=0) == [pre]
    assert "ended without its metrics.json (last line: Received SIGTERM: 15)" in "\n".join(lines)


def test_plan_shares_one_pretraining_and_runs_seed_zero_first(tmp_path):
    chosen = by_name("A/mnist/k5/relu", "A/mnist/k10/relu", "N2D/mnist")
    jobs = runner.plan(chosen, [0, 1], tmp_path, quick=False, device="cpu", extra=[])
    pretrains = [j for j in jobs if j.run_dir.parent.name == "pretrain"]
    assert [p.run_dir.name for p in pretrains] == ["mnist-all-cae-relu-s0", "mnist-all-cae-relu-s1"]
    assert len(pretrains[0].after) == 3  # k=5, k=10 and the UMAP/GMM recipe continue it
    seeds = [j.run_dir.name[-1] for j in jobs]
    assert seeds == sorted(seeds)  # every seed-0 run before any seed-1 run
    assert any("trainer.max_epochs=200" in o for o in pretrains[0].overrides)


def test_commands_continue_the_own_checkpoint_first(tmp_path):
    jobs = runner.plan(by_name("A/mnist/k10/relu"), [0], tmp_path, False, "cpu", [])
    pre, setting = jobs
    assert f"ckpt_path={pre.checkpoint}" in runner.command(setting, pre)
    setting.checkpoint.parent.mkdir(parents=True)
    setting.checkpoint.write_text("x")  # interrupted: it continues itself
    assert f"ckpt_path={setting.checkpoint}" in runner.command(setting, pre)


def test_finished_runs_are_skipped(tmp_path, monkeypatch):
    jobs = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "cpu", [])
    for job in jobs:
        job.run_dir.mkdir(parents=True)
        (job.run_dir / "metrics.json").write_text("{}")
    monkeypatch.setattr(runner.subprocess, "Popen", lambda *a, **k: pytest.fail("ran again"))
    assert runner.execute(jobs, log=lambda *_: None) == []


def test_runs_side_by_side_start_after_their_pretraining(tmp_path, monkeypatch):
    """--jobs 2: both seeds' pretrainings at once, each setting only after its own; a failed
    pretraining fails its settings without running them."""
    chosen = by_name("A/mnist/k5/relu", "A/mnist/k10/relu")
    jobs = runner.plan(chosen, [0, 1], tmp_path, True, "cpu", [])
    log = tmp_path / "order.txt"
    script = (
        "import sys, time, pathlib; d = pathlib.Path(sys.argv[1]); "
        "open(sys.argv[2], 'a').write(f'start {d.name}\\n'); time.sleep(0.3); "
        "open(sys.argv[2], 'a').write(f'end {d.name}\\n'); "
        "sys.exit(3) if d.name.endswith('s1-quick') else (d / 'metrics.json').write_text('{}')"
    )
    monkeypatch.setattr(
        runner,
        "command",
        lambda job, parent: [sys.executable, "-c", script, str(job.run_dir), str(log)],
    )
    failed = runner.execute(jobs, log=lambda *_: None, at_once=2, poll_s=0.05)
    events = log.read_text().split("\n")[:-1]
    assert sorted(events[:2]) == [
        "start mnist-all-cae-relu-s0-quick",
        "start mnist-all-cae-relu-s1-quick",
    ]
    assert events.index("end mnist-all-cae-relu-s0-quick") < events.index(
        "start A-mnist-k5-relu-s0-quick"
    )
    running = max(
        sum(1 if e.startswith("start") else -1 for e in events[: i + 1]) for i in range(len(events))
    )
    assert running == 2
    assert not any("s1-quick" in e and e.startswith("start A") for e in events)
    assert sorted(j.run_dir.name for j in failed) == [
        "A-mnist-k10-relu-s1-quick",
        "A-mnist-k5-relu-s1-quick",
        "mnist-all-cae-relu-s1-quick",
    ]


def test_dry_run_prints_commands_and_time(tmp_path, capsys):
    assert main(["--dry-run", "--only", "B/*", "--seeds", "1", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 settings × 1 seeds: 4 runs" in out and "experiment=ward_mnist_test" in out
    assert main(["--only", "Z/*", "--root", str(tmp_path)]) == 2


def test_tables_put_published_beside_ours_and_say_what_is_missing(tmp_path):
    s = by_name("B/mnist_test")[0]
    runs = tmp_path / "runs"
    gpu = {"cpu": "X", "threads": 2, "gpu": "G"}
    for seed, acc in ((0, 0.88), (1, 0.86), (4, 0.87)):
        pre = runs / "pretrain" / s.pretrain_key(seed, False)
        pre.mkdir(parents=True)
        (pre / "metrics.json").write_text("{}")
        # seed 1's pretraining on a GPU, its run on the CPU; seed 4's resumed, untimed before
        pre_info = {"machine": gpu if seed == 1 else {"cpu": "X", "threads": 2}, "wall_s": 600}
        if seed == 4:
            pre_info["resumed_from"] = str(pre / "checkpoints" / "last.ckpt")
        (pre / "run_info.json").write_text(json.dumps(pre_info))
        run = runs / s.run_key(seed, False)
        run.mkdir(parents=True)
        history = [{"epoch": 119 if seed == 1 else 199, "phase": "cluster_only"}]
        (run / "metrics.json").write_text(
            json.dumps({"acc": acc, "nmi": 0.8, "history": history, "stop_reason": "cluster_only"})
        )
        run_info = {"machine": {"cpu": "X", "threads": 2}, "wall_s": 30, "wall_s_total": 30}
        (run / "run_info.json").write_text(json.dumps(run_info))
    entries = tables.collect([s], [0, 1, 2], runs, quick=False)
    assert entries[0]["ours"]["seeds"] == [0, 1, 4]  # seed 4 ran by another command: it counts
    assert entries[0]["ours"]["acc_mean"] == pytest.approx(0.87)
    js, md = tables.write(entries, tmp_path)
    text = md.read_text()
    assert "0.8753 / 0.8410" in text and "0.8700 ± 0.0100" in text
    assert "3 of 4" in text and "(fewer: 200 planned)" in text
    every_run = text.split("## Every run")[1]
    assert "| B/mnist_test | 1 | 0.8600 | 0.8000 | 120 | no refinement | 10 + 0.5 |" in every_run
    assert "pretraining: G; run: X, 2 threads" in every_run  # each part where it ran
    assert "| B/mnist_test | 4 | 0.8700 | 0.8000 | 200 | no refinement | ? + 0.5 |" in every_run
    assert every_run.count("| B/mnist_test |") == 3
    assert "G; X, 2 threads" in text.split("## Every run")[0]  # the row names both machines
    assert json.loads(js.read_text())[0]["setting"] == "B/mnist_test"


def test_one_seed_has_no_spread_in_the_json(tmp_path):
    s = by_name("N2D/mnist_test")[0]
    run = tmp_path / s.run_key(0, False)
    run.mkdir(parents=True)
    history = [{"epoch": 199, "phase": "cluster_only"}]
    (run / "metrics.json").write_text(
        json.dumps({"acc": 0.9, "nmi": 0.8, "history": history, "stop_reason": "cluster_only"})
    )
    (ours,) = [e["ours"] for e in tables.collect([s], [0], tmp_path, quick=False)]
    assert ours["acc_mean"] == 0.9 and ours["acc_sd"] is None and ours["nmi_sd"] is None


def test_tables_cover_every_setting_and_quick_ones_go_elsewhere(tmp_path):
    """A command for one setting rewrites the whole table (the rest marked not run), and the
    short schedules write their own file: neither hides the published results."""
    assert main(["--tables-only", "--only", "B/mnist_test", "--root", str(tmp_path)]) == 0
    entries = json.loads((tmp_path / "reproduction.json").read_text())
    assert {e["setting"] for e in entries} == {s.name for s in SETTINGS}
    assert main(["--tables-only", "--quick", "--only", "B/*", "--root", str(tmp_path)]) == 0
    assert (tmp_path / "reproduction_quick.json").is_file()
    assert json.loads((tmp_path / "reproduction.json").read_text()) == entries


def test_a_folder_started_with_other_settings_is_not_continued(tmp_path, monkeypatch):
    """`--root R … data.root=X` then the same with data.root=Y: the second would continue
    the first's pretraining with other data; it refuses and says why."""
    first = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "cpu", ["data.root=X"])
    assert first[0].claim() is None and first[0].claim() is None  # new, then its own
    on_gpu = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "gpu", ["data.root=X"])
    assert on_gpu[0].claim() is None  # the same run on another device
    other = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "cpu", ["data.root=Y"])
    monkeypatch.setattr(runner.subprocess, "Popen", lambda *a, **k: pytest.fail("ran"))
    said = []
    failed = runner.execute(other[:1], log=said.append)
    assert failed == other[:1]
    assert "data.root=X, data.root=Y" in said[-1] and "another --root" in said[-1]


def test_a_pretraining_finished_elsewhere_trains_again_for_runs_still_to_do(tmp_path, monkeypatch):
    """A fresh clone holds a pretraining's metrics.json, not its checkpoint: a setting still to
    run would fail on the missing file. The pretraining counts as done only while every run that
    continues it is done; else it is trained again first."""
    pre, setting = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "cpu", [])
    pre.run_dir.mkdir(parents=True)
    (pre.run_dir / "metrics.json").write_text("{}")
    assert not pre.done
    ran, said = [], []

    def fake_popen(cmd, **kwargs):
        job_dir = next(a.split("=", 1)[1] for a in cmd if a.startswith("hydra.run.dir="))
        ran.append(job_dir)
        if job_dir == str(pre.run_dir):  # the run sets the earlier outputs aside (run.py)
            assert (pre.run_dir / "metrics.json").read_text() == "{}"  # not deleted
            pre.checkpoint.parent.mkdir(parents=True)
            pre.checkpoint.write_text("x")
        (tmp_path / job_dir / "metrics.json").write_text("{}")
        return type("Done", (), {"poll": lambda self: 0, "returncode": 0, "pid": 424242})()

    monkeypatch.setattr(runner.subprocess, "Popen", fake_popen)
    assert runner.execute([pre, setting], log=said.append, poll_s=0) == []
    assert ran == [str(pre.run_dir), str(setting.run_dir)]
    assert any("checkpoint is not here; 1 runs continue it: training it again" in s for s in said)
    pre.checkpoint.unlink()
    assert pre.done  # every run that continues it is done: nothing to train again


def test_the_estimate_counts_what_an_interrupted_pretraining_trained(tmp_path):
    import torch

    pre, setting = runner.plan(by_name("B/mnist_test"), [0], tmp_path, False, "cpu", [])
    assert pre.epochs == 200 and pre.remaining_s() == pre.estimate_s
    pre.checkpoint.parent.mkdir(parents=True)
    torch.save({"epoch": 99}, pre.checkpoint)  # epochs 0-99 trained
    assert pre.remaining_s() == pytest.approx(pre.estimate_s / 2)
    assert setting.remaining_s() == setting.estimate_s


def test_the_estimate_of_a_quick_method_b_pretraining_is_at_its_width(tmp_path):
    """The _quick files train the deep CAE at half width, a third of the time a step: the
    dry run priced them at the published width (≈ 20 min for 10 epochs of MNIST-full). The
    width is read from the experiment file; on a GPU both widths are priced alike."""
    for device, speedup in (("cpu", runner.CPU_SPEEDUP_BY_WIDTH[(16, 32, 64)]), ("gpu", 1.0)):
        (full, _), (quick, _) = (
            runner.plan(by_name("B/mnist"), [0], tmp_path, q, device, []) for q in (False, True)
        )
        per_epoch = full.estimate_s / full.epochs
        assert quick.estimate_s / quick.epochs == pytest.approx(per_epoch / speedup)


def test_printed_commands_are_shell_quoted(tmp_path, capsys):
    main(
        [
            "--dry-run",
            "--only",
            "B/mnist_test",
            "--seeds",
            "1",
            "--root",
            str(tmp_path),
            "data.root=/my data",
        ]
    )
    assert "'data.root=/my data'" in capsys.readouterr().out


def test_a_failed_run_says_why_in_the_plan_output(tmp_path, monkeypatch):
    """A run that fails (its data missing, say) has its error line printed under it, not only
    "see <folder>"; a crash without one shows its last line."""
    jobs = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "cpu", [])
    script = "import sys; print('loading'); print('error: MNIST: no files under /x'); sys.exit(2)"
    monkeypatch.setattr(runner, "command", lambda job, parent: [sys.executable, "-c", script])
    said = []
    assert len(runner.execute(jobs, log=said.append, poll_s=0.01)) == 2
    assert "      error: MNIST: no files under /x" in said
    crash = tmp_path / "crash.log"
    earlier = "error: an earlier attempt's reason\n"
    crash.write_text(earlier + "Traceback (most recent call last):\n  ...\nIndexError: index 3\n\n")
    assert runner.why_failed(crash, len(earlier)) == "IndexError: index 3"  # this attempt's
    assert runner.why_failed(crash, len(earlier), -9) == "killed by signal 9"


def test_a_pretraining_is_the_same_run_whichever_settings_chose_it(tmp_path):
    """N2D and method A share Fashion-MNIST's pretraining: started by one selection, it is
    continued by the other, not refused as "started with other settings"."""
    n2d = runner.plan(by_name("N2D/fashion"), [0], tmp_path, False, "cpu", [])[0]
    a = runner.plan(by_name("A/fashion/k10/relu"), [0], tmp_path, False, "cpu", [])[0]
    assert n2d.run_dir == a.run_dir and n2d.identity == a.identity
    assert "experiment=dekm_fashion" in n2d.identity
    assert n2d.claim() is None and a.claim() is None


def test_a_run_made_with_other_overrides_is_not_the_published_one(tmp_path, capsys):
    """A finished run started with extra overrides (`… -- dataset.limit=500`) is neither
    skipped by the plain command as done nor shown unmarked beside the paper."""
    pre, run = runner.plan(by_name("N2D/mnist_test"), [0], tmp_path, False, "cpu", [])
    odd = runner.plan(by_name("N2D/mnist_test"), [0], tmp_path, False, "cpu", ["dataset.limit=500"])
    history = [{"epoch": 199, "phase": "cluster_only"}]
    for job in odd:
        assert job.claim() is None
        metrics = {"acc": 0.61, "nmi": 0.55, "n": 500, "history": history, "stop_reason": "x"}
        (job.run_dir / "metrics.json").write_text(json.dumps(metrics))
    assert odd[1].done and not run.done  # the same folder, another run
    assert "holds a run started with other settings (dataset.limit=500)" in run.claim()
    entries = tables.collect(by_name("N2D/mnist_test"), [0], tmp_path, quick=False)
    assert entries[0]["ours"]["runs"][0]["not_as_published"] == [
        "500 images, not 10000",
        "dataset.limit=500",
    ]
    text = tables.markdown(entries)
    assert "| N2D/mnist_test † |" in text and "| 500 images, not 10000, dataset.limit=500 |" in text
    harmless = runner.plan(by_name("N2D/mnist_test"), [1], tmp_path, False, "cpu", ["data.root=/d"])
    for job in harmless:
        assert job.claim() is None
        metrics = {"acc": 0.9, "nmi": 0.9, "n": 10000, "history": history, "stop_reason": "x"}
        (job.run_dir / "metrics.json").write_text(json.dumps(metrics))
    entries = tables.collect(by_name("N2D/mnist_test"), [1], tmp_path, quick=False)
    assert [r["not_as_published"] for r in entries[0]["ours"]["runs"]][-1] == []
    # the changed run is listed, not averaged in: seed 1 alone makes the mean
    assert entries[0]["ours"]["acc_mean"] == 0.9 and entries[0]["ours"]["seeds"] == [1]
    assert entries[0]["ours"]["seeds_not_as_published"] == [0]
    assert "| 1 of 2 (+1 †) |" in tables.markdown(entries)


def test_a_changed_run_is_still_marked_in_a_fresh_clone(tmp_path):
    """plan.json is not committed; run_info.json is, with the command each run was started
    with: a changed refinement (refine.tol=0.05) stays marked without plan.json."""
    pre, run = runner.plan(by_name("A/mnist/k10/relu"), [0], tmp_path, False, "cpu", [])
    history = [{"epoch": 0, "phase": "pretrain"}, {"epoch": 1, "phase": "refine"}]
    for job in (pre, run):
        job.run_dir.mkdir(parents=True)
        metrics = {"acc": 0.9, "nmi": 0.8, "n": 70000, "history": history, "stop_reason": "x"}
        (job.run_dir / "metrics.json").write_text(json.dumps(metrics))
    command = shlex.join(
        ["deepcluster", *run.identity, "refine.tol=0.05", f"ckpt_path={pre.checkpoint}"]
    )
    (run.run_dir / "run_info.json").write_text(json.dumps({"command": command}))
    entries = tables.collect(by_name("A/mnist/k10/relu"), [0], tmp_path, quick=False)
    assert entries[0]["ours"]["runs"][0]["not_as_published"] == ["refine.tol=0.05"]


def test_a_changed_run_in_a_fresh_clone_is_not_done(tmp_path, monkeypatch):
    """The tables leave a committed run with overrides of its own out of the mean; the
    reproduction must not count it as done either (it read only plan.json, never committed),
    nor write over it: it says which override differs. A published run stays done."""
    pre, run = runner.plan(by_name("A/mnist/k10/relu"), [0], tmp_path, False, "cpu", [])

    def commit(job, *extra):
        job.run_dir.mkdir(parents=True, exist_ok=True)
        (job.run_dir / "metrics.json").write_text(json.dumps({"acc": 0.9}))
        placing = [f"hydra.run.dir={job.run_dir}", *runner.COMMON, "data.root=/elsewhere"]
        command = shlex.join(["deepcluster", *job.identity, *extra, *placing])
        (job.run_dir / "run_info.json").write_text(json.dumps({"command": command}))

    commit(pre)
    commit(run)
    assert run.done and pre.done  # as published: nothing to redo
    commit(run, "refine.tol=0.05")
    assert not (run.run_dir / "plan.json").exists()
    assert pre.same_run() and not run.same_run() and not run.done
    refused = run.claim()
    assert refused is not None and "(refine.tol=0.05)" in refused
    assert not (run.run_dir / "plan.json").exists()  # nothing written over
    # the refused run will not continue the pretraining: it is not trained again for it
    assert not run.needs_parent and pre.done
    started = []
    monkeypatch.setattr(runner.subprocess, "Popen", lambda cmd, **kw: started.append(cmd))
    assert runner.execute([pre, run], log=lambda *_: None, poll_s=0) == [run]
    assert started == [] and (pre.run_dir / "metrics.json").is_file()


def test_overrides_in_another_order_are_the_same_run(tmp_path):
    first = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "cpu", ["a.b=1", "c.d=2"])
    assert first[0].claim() is None
    again = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "cpu", ["c.d=2", "a.b=1"])
    assert again[0].claim() is None and again[0].same_run()


def test_a_folder_another_reproduction_is_training_is_refused(tmp_path):
    """Two reproductions at once (another terminal, `--only 'B/*'` beside `--only B/mnist`)
    would write one folder's checkpoints twice; a lock left by a process that died is not."""
    pre = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "cpu", [])[0]
    assert pre.claim() is None and pre.lock_file.read_text().strip() == str(os.getpid())
    pre.lock_file.write_text(f"{os.getppid()}\n")  # alive, not us
    assert "being trained by another reproduction" in pre.claim()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pre.lock_file.write_text(gone.stdout)  # a process that has ended
    assert pre.claim() is None
    # a reproduction killed alone: its training lives on and still holds the folder
    pre.lock_file.write_text(f"{gone.stdout.strip()}\n{os.getppid()}\n")
    assert f"process {os.getppid()}" in pre.claim()
    pre.lock_file.write_text(gone.stdout)
    pre.release()
    assert not pre.lock_file.exists()


def test_runs_after_a_refused_pretraining_are_skipped(tmp_path, monkeypatch):
    """The plain command refuses a pretraining made with other overrides (a smoke test's
    dataset.limit=500); it must not start the settings from that checkpoint either."""
    smoke = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "cpu", ["dataset.limit=500"])
    assert smoke[0].claim() is None
    (smoke[0].run_dir / "metrics.json").write_text("{}")
    smoke[0].checkpoint.parent.mkdir(parents=True)
    smoke[0].checkpoint.write_text("x")
    smoke[0].release()
    plain = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "cpu", [])
    monkeypatch.setattr(runner.subprocess, "Popen", lambda *a, **k: pytest.fail("ran"))
    said = []
    assert runner.execute(plain, log=said.append, poll_s=0) == plain
    assert "its pretraining failed or was refused" in said[-1]


def test_a_finished_pretraining_is_not_retrained_for_runs_with_their_own_checkpoint(tmp_path):
    pre, setting = runner.plan(by_name("A/mnist/k10/relu"), [0], tmp_path, True, "cpu", [])
    pre.run_dir.mkdir(parents=True)
    (pre.run_dir / "metrics.json").write_text("{}")
    setting.checkpoint.parent.mkdir(parents=True)
    setting.checkpoint.write_text("x")  # interrupted inside its refinement: continues itself
    assert pre.done and not setting.done


def test_a_pattern_that_matches_nothing_is_an_error_even_beside_one_that_does(tmp_path, capsys):
    assert main(["--only", "A/mnist/k10/relu", "--only", "B/mnsit", "--dry-run"]) == 2
    assert "no setting matches --only B/mnsit" in capsys.readouterr().err


def test_a_run_whose_metrics_are_another_settings_is_not_averaged_in(tmp_path):
    # a folder copied (or a command never recorded) entered the mean unflagged: only extra
    # overrides were checked, never what the run recorded of itself
    pre, run = runner.plan(by_name("A/mnist/k15/relu"), [0], tmp_path, False, "cpu", [])
    history = [{"epoch": 0, "phase": "pretrain"}, {"epoch": 1, "phase": "refine"}]
    for job in (pre, run):
        job.run_dir.mkdir(parents=True)
        metrics = {"acc": 0.5, "nmi": 0.5, "n": 70000, "history": history, "stop_reason": "x"}
        metrics |= {"k": 10, "activation": "sigmoid", "seed": 0, "dataset": "mnist"}
        (job.run_dir / "metrics.json").write_text(json.dumps(metrics))
    # a quote in the recorded command (written unquoted before) must not stop the tables
    command = "deepcluster data.root=/data/o'brien/mnist"
    (run.run_dir / "run_info.json").write_text(json.dumps({"command": command}))
    (entry,) = tables.collect(by_name("A/mnist/k15/relu"), [0], tmp_path, quick=False)
    assert entry["ours"]["runs"][0]["not_as_published"] == [
        "its metrics.json has activation=sigmoid, not relu",
        "its metrics.json has k=10, not 15",
    ]
    assert entry["ours"]["acc_mean"] is None


def test_the_lock_names_the_training_as_well_as_the_reproduction(tmp_path, monkeypatch):
    (pre,) = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "cpu", [])[:1]
    seen = []

    def fake_popen(cmd, **kwargs):
        (pre.run_dir / "metrics.json").write_text("{}")
        proc = type("Done", (), {"poll": lambda self: 0, "returncode": 0, "pid": 424242})()
        return proc

    real_release = runner.Job.release
    monkeypatch.setattr(runner.subprocess, "Popen", fake_popen)
    monkeypatch.setattr(
        runner.Job,
        "release",
        lambda job: (seen.append(job.lock_file.read_text()), real_release(job)),
    )
    assert runner.execute([pre], log=lambda *_: None, poll_s=0) == []
    assert seen == [f"{os.getpid()}\n424242\n"] and not pre.lock_file.exists()


def test_a_finished_run_is_done_whatever_folder_the_data_came_from(tmp_path):
    """data.root says where the images were read from: a finished run started with
    `-- data.root=X` is done for a plan without it (an interrupted one is not continued)."""
    (_, run) = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "cpu", ["data.root=X"])
    assert run.claim() is None
    (_, again) = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "cpu", [])
    assert not again.same_run()  # unfinished: other data must not continue it
    (run.run_dir / "metrics.json").write_text("{}")
    assert again.same_run() and again.done
    # a finished pretraining trained again (its checkpoint gone) under the other data.root
    # records that one: an interruption then continues it, not refuses it
    (pre, _) = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "cpu", ["data.root=X"])
    assert pre.claim() is None
    (pre.run_dir / "metrics.json").write_text("{}")
    (again_pre, _) = runner.plan(by_name("B/mnist_test"), [0], tmp_path, True, "cpu", [])
    assert again_pre.claim() is None
    (pre.run_dir / "metrics.json").unlink()  # set aside by the new run, which then stops
    assert again_pre.same_run() and again_pre.claim() is None


def test_a_retrained_pretraining_keeps_crediting_the_runs_built_on_the_earlier_one(tmp_path):
    """A fresh clone trains a pretraining again for a new setting; the runs that continued the
    earlier one keep its machine and time in the tables (run.py moved it to previous/)."""
    pre = tmp_path / "pre"
    (pre / "previous").mkdir(parents=True)
    old = {"machine": {"cpu": "OLD"}, "wall_s": 6000}  # before run_info had finished_at
    (pre / "previous" / "run_info.json").write_text(json.dumps(old))
    new = {"machine": {"gpu": "NEW"}, "wall_s": 60, "finished_at": "2026-12-07T03:00:00+00:00"}
    (pre / "run_info.json").write_text(json.dumps(new))
    assert tables.pretraining_record(pre, {"wall_s": 100}) == old  # an older run
    later = {"wall_s": 100, "finished_at": "2026-12-07T03:10:00+00:00"}
    assert tables.pretraining_record(pre, later) == new
    sooner = {"wall_s": 100, "finished_at": "2026-12-07T02:59:00+00:00"}  # started before it
    assert tables.pretraining_record(pre, sooner) == old
    assert tables.pretraining_record(tmp_path / "none", later) == {}
    # a run that names its source (run_info's source_finished_at) is credited to it, whatever
    # its own times say
    named = {"wall_s": 100, "finished_at": "2026-12-07T03:10:00+00:00"}
    named["source_finished_at"] = new["finished_at"]
    (pre / "previous.2").mkdir()
    other = {"machine": {"cpu": "THIRD"}, "wall_s": 1, "finished_at": "2026-12-07T03:05:00+00:00"}
    (pre / "previous.2" / "run_info.json").write_text(json.dumps(other))
    assert tables.pretraining_record(pre, named) == new


def test_a_run_of_an_experiment_file_since_changed_is_not_this_run(tmp_path):
    """`ward_mnist_test` now trains the deep CAE at full width: a finished run of the file as
    it was (channels [16, 32, 64], recorded in its run_info.json) is neither skipped as done,
    nor continued, nor averaged in; a run of the file as it is, is."""
    pre, run = runner.plan(by_name("B/mnist_test"), [0], tmp_path, False, "cpu", [])
    assert runner.composed_model(("experiment=ward_mnist_test",))["channels"] == [32, 64, 128]
    history = [{"epoch": 199, "phase": "cluster_only"}]
    for job in (pre, run):
        assert job.claim() is None
        metrics = {"acc": 0.8, "nmi": 0.7, "n": 10000, "history": history, "stop_reason": "x"}
        (job.run_dir / "metrics.json").write_text(json.dumps(metrics))
        model = {"name": "cae_deep", "channels": [16, 32, 64], "code_dim": 10}
        (job.run_dir / "run_info.json").write_text(json.dumps({"model_config": model}))
    said = "model.channels=[16, 32, 64] (the experiment file now builds [32, 64, 128])"
    assert not pre.done and not run.done and pre.model_changes() == [said]
    assert said in pre.claim() and "move that folder away" in pre.claim()
    entries = tables.collect(by_name("B/mnist_test"), [0], tmp_path, quick=False)
    assert entries[0]["ours"]["runs"][0]["not_as_published"] == [said]
    assert entries[0]["ours"]["seeds"] == []
    # the file as it is now: a key recorded then but no longer built is no difference
    for job in (pre, run):
        model = {"name": "cae_deep", "channels": [32, 64, 128], "gone": 1}
        (job.run_dir / "run_info.json").write_text(json.dumps({"model_config": model}))
    assert pre.done and run.done and pre.model_changes() == []
    # a folder holding only Hydra's config.yaml (a local run, interrupted) is read as well
    (pre.run_dir / "run_info.json").unlink()
    (pre.run_dir / "config.yaml").write_text("model:\n  channels: [16, 32, 64]\n")
    assert pre.model_changes() == [said]
