#!/usr/bin/env bash
# Everything a session lent a GPU machine should run, in one go (≈ 12 min on one H100):
#   run (device tool): bash bench/gpu_session.sh      carry: .wheels
# Before, on this machine (the GPU machine has no internet and lacks these packages):
#   pip download --python-version 3.12 --only-binary=:all: --no-deps -d .wheels \
#       hydra-core omegaconf fastcluster umap-learn pynndescent wandb hydra-joblib-launcher
#   pip wheel --no-deps -w .wheels antlr4-python3-runtime==4.9.3
# Results come back under $OUT: bench/results_gpu.{json,md} and the reproduction runs'
# metrics.json / run_info.json; commit them, never checkpoints.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-deps --no-index .wheels/*.whl
python3 -m pip install -q --no-deps --no-build-isolation -e .
export DEEPCLUSTER_DATA=${DEEPCLUSTER_DATA:-$(pwd)/../shared/data} WANDB_MODE=offline
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
# 1. the GPU benchmark (≈ 2 min)
timeout 240 python3 bench/gpu.py --out "$OUT/bench/results_gpu.json" || echo "gpu bench failed"
# 2. the published schedules on the GPU, seed 0: method A MNIST-full k=10 ReLU and method B
#    MNIST-test (their pretrainings are shared with the other settings of later sessions)
timeout 480 python3 -m deepcluster.reproduce --device gpu --seeds 1 \
    --only 'A/mnist/k10/relu' --only 'B/mnist_test' --root "$OUT/results" logger=csv \
    || echo "reproduction stopped (resumable: run again)"
find "$OUT/results" -name '*.ckpt' -delete 2>/dev/null
exit 0
