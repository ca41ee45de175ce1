# deepcluster — `make run` and `make test` set everything up from nothing (.venv, install).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ARGS    ?=
# this repository's machines keep the datasets beside the checkout; elsewhere data.root
# defaults to $$DEEPCLUSTER_DATA, else ~/.cache/deepcluster
ifneq ($(wildcard ../shared/data),)
export DEEPCLUSTER_DATA ?= $(abspath ../shared/data)
endif

.PHONY: setup run test test-slow test-all lint format bench report reproduce wheel clean

# constraints.txt pins torch/torchvision to the builds on this project's machines
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## the main job: train + cluster (default: bundled digits; ARGS="dataset=mnist k=10" …)
run: setup
	$(BIN)/python -m deepcluster $(ARGS)

## default suite: no network, no GPU, a few minutes on 2 cores (includes the wheel test);
## two workers of one thread each (a test file stays on one worker: its fixtures run once)
test: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile

## heavy accuracy floors on real MNIST (needs DEEPCLUSTER_DATA)
test-slow: setup
	$(BIN)/python -m pytest -q -m slow; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no slow tests collected"; exit 1; fi; exit $$rc

test-all: setup
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: setup
	$(BIN)/ruff check deepcluster tests bench
	$(BIN)/ruff format --check deepcluster tests bench

format: setup
	$(BIN)/ruff format deepcluster tests bench
	$(BIN)/ruff check --fix deepcluster tests bench

## performance benchmark → bench/results.json, bench/results.md
bench: setup
	$(BIN)/python bench/bench.py $(ARGS)

## every published setting of both papers, 3 seeds, resumable → results/reproduction.{json,md}
reproduce: setup
	$(BIN)/python -m deepcluster.reproduce $(ARGS)

## table + figures of a sweep: make report DIR=multirun/2026-11-25/15-00-00
report: setup
	@test -n "$(DIR)" || { echo "usage: make report DIR=multirun/<date>/<time>"; exit 2; }
	$(BIN)/python -m deepcluster.report $(DIR) $(ARGS)

## the installable wheel → dist/
wheel: setup
	$(BIN)/python -m build --wheel --no-isolation --outdir dist .

# the environment and build files only: runs (outputs/, multirun/, results/runs/) are results,
# some of them hours of training; remove those by hand
clean:
	rm -rf $(VENV) .pytest_cache dist build *.egg-info
