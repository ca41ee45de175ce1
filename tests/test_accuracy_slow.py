"""Accuracy floors on real MNIST (`make test-slow`; about 10 minutes each on 2 cores).

The short CPU schedules (`*_quick`). Each floor sits under the lowest of the seeds measured
(results/reproduction_quick.md), and the test runs a seed that was not among them
(DEEPCLUSTER_TEST_SEED, default 3): a floor must hold for any seed, not the one it was
tuned on. A regression in training, clustering or refinement fails them. Labels only score.
"""

import json
import os

import pytest

from tests.conftest import real_data_root, run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(real_data_root() is None, reason="real MNIST not found (DEEPCLUSTER_DATA)"),
]


def run_experiment(tmp_path, *args):
    proc = run_cli(
        *args,
        f"data.root={real_data_root()}",
        "logger=csv",
        "plots=false",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
        timeout=3600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / "metrics.json").read_text())


SEED = int(os.environ.get("DEEPCLUSTER_TEST_SEED", "3"))
# seeds 0-2 (results/reproduction_quick.md, `python -m deepcluster.reproduce --quick --only
# 'A/mnist/k10/relu' --only 'N2D/mnist'`): method A ACC 0.8626 / 0.8334 / 0.8395 (NMI lowest
# 0.7988) on the AMD EPYC, 0.9262 / 0.9167 / 0.8521 on the Xeon; UMAP + GMM 0.9652 / 0.9648 /
# 0.9638 (NMI lowest 0.9120; the Xeon's 0.9649-0.9654). Floors: under method A's lowest seed
# by about its seeds' standard deviation (0.015-0.04); UMAP + GMM's seeds agree to 0.001, its
# floor stays 0.04 under them (a GMM fit that merges two digits costs about 0.1)
# Seed 4, never run before (`DEEPCLUSTER_TEST_SEED=4 pytest -m slow`, two threads of the 2-core
# AVX2 AMD EPYC, 41 min): method A 0.8283 / NMI 0.7993, UMAP + GMM 0.9674 / 0.9191; both pass
ACC_FLOOR_A, NMI_FLOOR_A = 0.81, 0.78
ACC_FLOOR_N2D, NMI_FLOOR_N2D = 0.92, 0.88


def test_method_a_on_mnist_full(tmp_path):
    m = run_experiment(tmp_path, "experiment=dekm_mnist_quick", f"seed={SEED}")
    assert m["acc"] >= ACC_FLOOR_A and m["nmi"] >= NMI_FLOOR_A, m
    pretrain = [h for h in m["history"] if h["phase"] == "pretrain" and h.get("acc") is not None]
    assert m["acc"] > pretrain[-1]["acc"] + 0.03  # the refinement is what lifts it


def test_umap_gmm_on_mnist_full(tmp_path):
    m = run_experiment(tmp_path, "experiment=n2d_mnist_quick", f"seed={SEED}")
    assert m["acc"] >= ACC_FLOOR_N2D and m["nmi"] >= NMI_FLOOR_N2D, m
