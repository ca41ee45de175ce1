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
            "--steps",
            "2",
            "--warmup",
            "1",
            "--repeats",
            "1",
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
    assert time_to_acc(tmp_path, 0.90) == 90.0
    assert time_to_acc(tmp_path, 0.99) is None
