"""The benchmark runs end to end and writes the keys the performance issue asks for.

A smoke test on a few random images: the figures themselves come from `make bench`.
"""

import importlib.util
import json
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "bench", Path(__file__).resolve().parent.parent / "bench" / "bench.py"
)
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)
main, time_to_acc = _bench.main, _bench.time_to_acc

KEYS = (
    "train_img_per_s",
    "peer_dataloader_img_per_s",
    "bare_loop_img_per_s",
    "train_vs_peer",
    "train_vs_bare",
    "flops_per_train_image",
    "peak_fraction",
    "embed_img_per_s",
    "kmeans_70k_s",
    "ward_3k_s",
    "ward_3k_peak_mb",
)


def test_bench_smoke_writes_results(tmp_path):
    out = tmp_path / "results.json"
    main(
        [
            "--data-root",
            "",
            "--n-images",
            "3000",
            "--batch-size",
            "32",  # the pipeline, not the speed: a 256-image step is 1.5 s on one EPYC thread
            "--steps",
            "2",
            "--warmup",
            "1",
            "--repeats",
            "1",
            "--code-steps",
            "5",
            "--no-sklearn-ward",
            "--out",
            str(out),
        ]
    )
    results = json.loads(out.read_text())
    for key in KEYS:
        assert key in results, key
    assert "ward_20k_s" not in results  # sizes are named by what was measured
    # no real MNIST given: the DataLoader peer cannot run and says so with null, not a number
    assert results["peer_dataloader_img_per_s"] is None
    assert results["train_img_per_s"] > 0 and 0 < results["peak_fraction"] < 1
    assert 39e6 < results["flops_per_train_image"] < 41e6  # the CAE: ≈ 39.8 MFLOP per image
    assert out.with_suffix(".md").read_text().count("|") > 20


def test_time_to_acc_reads_a_runs_records(tmp_path):
    history = [{"epoch": e, "acc": a} for e, a in enumerate([0.5, 0.85, 0.91, 0.95])]
    (tmp_path / "metrics.json").write_text(json.dumps({"history": history}))
    timings = [{"epoch": e, "elapsed_s": 30.0 * (e + 1)} for e in range(4)]
    (tmp_path / "run_info.json").write_text(json.dumps({"timings": timings}))
    assert time_to_acc(tmp_path, 0.90) == 90.0  # no startup_s recorded: 0
    assert time_to_acc(tmp_path, 0.99) is None
    info = {"timings": timings, "startup_s": 7.5}  # the command's start counts too
    (tmp_path / "run_info.json").write_text(json.dumps(info))
    assert time_to_acc(tmp_path, 0.90) == 97.5


def test_a_run_records_its_startup(compose, tmp_path):
    from deepcluster.run import run

    run(
        compose(
            "dataset=synthetic",
            "dataset.n=64",
            "trainer.max_epochs=1",
            "logger=none",
            "plots=false",
            f"output_dir={tmp_path}",
        )
    )
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert 0 < info["startup_s"] < info["wall_s"]
    assert info["machine"]["cpu"] and info["machine"]["torch"]


def test_gpu_bench_paths_run_on_cpu_tensors(tmp_path):
    """Every path of bench/gpu.py (device-resident data, bf16 autocast, torch k-means) on the
    CPU: the GPU session must not be the first to run them."""
    spec = importlib.util.spec_from_file_location(
        "gpu_bench", Path(__file__).resolve().parent.parent / "bench" / "gpu.py"
    )
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    out = tmp_path / "gpu.json"
    results = gpu.main(
        [
            "--device",
            "cpu",
            "--data-root",
            "",
            "--n-images",
            "1024",
            "--batch-size",
            "32",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--repeats",
            "1",
            "--no-compile",
            "--out",
            str(out),
        ]
    )
    assert {"ours", "ours_bf16", "bare", "bare_bf16"} <= set(results["img_per_s"])
    assert abs(results["epoch"]["kmeans_inertia_rel_diff"]) < 0.05
    assert json.loads(out.read_text())["device"]


def test_time_to_acc_adds_the_pretraining_it_continued(tmp_path):
    pre, ref = tmp_path / "pre", tmp_path / "ref"
    for d in (pre, ref):
        d.mkdir()
    history = [{"epoch": 0, "acc": 0.5}, {"epoch": 1, "acc": 0.8}]
    (pre / "metrics.json").write_text(json.dumps({"history": history}))
    (pre / "run_info.json").write_text(
        json.dumps(
            {
                "wall_s": 100.0,
                "timings": [{"epoch": 0, "elapsed_s": 40.0}, {"epoch": 1, "elapsed_s": 80.0}],
            }
        )
    )
    (ref / "metrics.json").write_text(
        json.dumps({"history": [*history, {"epoch": 2, "acc": 0.93}]})
    )
    (ref / "run_info.json").write_text(
        json.dumps(
            {
                "resumed_from": str(pre / "checkpoints" / "last.ckpt"),
                "startup_s": 5.0,
                "timings": [{"epoch": 2, "elapsed_s": 30.0}],
            }
        )
    )
    assert time_to_acc(ref, 0.90) == 100.0 + 5.0 + 30.0  # the two commands, one after the other
    assert time_to_acc(ref, 0.70) == 80.0  # reached while pretraining


def test_rerunning_the_bench_keeps_its_time_to_accuracy_entries(tmp_path):
    """`make bench` without --time-to-acc re-reads the last results' entries from their runs."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"history": [{"epoch": 0, "acc": 0.96}]}))
    (run / "run_info.json").write_text(json.dumps({"timings": [{"epoch": 0, "elapsed_s": 12.0}]}))
    out = tmp_path / "results.json"
    assert _bench.previous_time_to_acc(out) == []  # no earlier results: nothing to keep
    entry = _bench.time_to_acc_entry(f"UMAP + GMM, one epoch={run}@0.95")
    out.write_text(json.dumps({"time_to_accuracy": [entry]}))
    (specs,) = _bench.previous_time_to_acc(out)
    assert _bench.time_to_acc_entry(specs) == entry


def test_a_cpu_run_on_a_gpu_machine_does_not_claim_the_gpu(monkeypatch):
    import torch

    from deepcluster import outputs
    from deepcluster.machine import describe

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Some GPU")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)  # nothing ran on it
    describe.cache_clear()
    try:
        assert describe()["gpu"] == "Some GPU"  # the machine has one (the benchmark's view)
        assert describe(ran_on_gpu=outputs._used_cuda())["gpu"] is None  # the run's view
    finally:
        describe.cache_clear()


def test_an_installed_package_does_not_record_a_surrounding_repositorys_commit(
    tmp_path, monkeypatch
):
    """Installed into a .venv inside the user's own git project: that project's commit is
    not deepcluster's."""
    import subprocess

    from deepcluster import machine

    project = tmp_path / "project"
    site = project / ".venv" / "lib" / "site-packages" / "deepcluster"
    site.mkdir(parents=True)
    for cmd in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "theirs"]):
        subprocess.run(
            ["git", "-c", "user.name=u", "-c", "user.email=u@x", "-C", str(project), *cmd],
            check=True,
        )
    monkeypatch.setattr(machine, "__file__", str(site / "machine.py"))
    assert machine.commit() is None
    # the same call from a checkout of deepcluster (the project's root holds .git) names it
    (project / "deepcluster").mkdir()
    monkeypatch.setattr(machine, "__file__", str(project / "deepcluster" / "machine.py"))
    head = subprocess.run(
        ["git", "-C", str(project), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert head and machine.commit().startswith(head)
