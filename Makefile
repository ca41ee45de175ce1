# deepcluster — `make run` and `make test` set everything up from nothing (.venv, install).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ARGS    ?=
export DEEPCLUSTER_DATA ?= $(abspath ../shared/data)

.PHONY: setup run test test-slow test-all lint format bench report clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## the main job: train + cluster (default: bundled digits; ARGS="dataset=mnist k=10" …)
run: setup
	$(BIN)/python -m deepcluster $(ARGS)

## default suite: no network, no GPU, a few minutes on 2 cores
test: setup
	$(BIN)/python -m pytest -q

## heavy accuracy floors on real MNIST (needs DEEPCLUSTER_DATA)
test-slow: setup
	$(BIN)/python -m pytest -q -m slow; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no slow tests collected"; exit 1; fi; exit $$rc

test-all: setup
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: setup
	$(BIN)/ruff check deepcluster tests
	$(BIN)/ruff format --check deepcluster tests

format: setup
	$(BIN)/ruff format deepcluster tests
	$(BIN)/ruff check --fix deepcluster tests

## performance benchmark → bench/results.json, bench/results.md (ARGS="--acc90-run outputs/…")
bench: setup
	$(BIN)/python bench/bench.py $(ARGS)

## table + figures of a sweep: make report DIR=multirun/2026-11-25/15-00-00
report: setup
	@test -n "$(DIR)" || { echo "usage: make report DIR=multirun/<date>/<time>"; exit 2; }
	$(BIN)/python -m deepcluster.report $(DIR) $(ARGS)

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
