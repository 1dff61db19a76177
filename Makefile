# Sandcat: `make run` starts the embedded server; `make test` runs the whole suite.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run run-distributed test lint typecheck install clean bench-micro

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml setup.py $(wildcard native/cython/*.pyx)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/sandcat migrate
	$(BIN)/sandcat serve

run-distributed: install
	$(BIN)/python scripts/topology.py

test: install
	bash scripts/test.sh

lint: install
	$(BIN)/ruff check sandcat tests benchmarks scripts setup.py
	$(BIN)/ruff format --check sandcat tests benchmarks scripts setup.py

typecheck: install
	$(BIN)/mypy

bench-micro: install
	$(BIN)/pytest benchmarks/micro -q --benchmark-only -p no:cacheprovider

clean:
	rm -rf $(VENV) build *.egg-info data

# The standard load suite against embedded servers it starts itself, with and without the
# compiled extensions; then docs/benchmarks.md and docs/plots/*.png are regenerated.
.PHONY: bench
BENCH_OUT := benchmarks/results/latest
bench: install
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.load suite --label native --out $(BENCH_OUT) $(BENCH_ARGS)
	SANDCAT_NO_EXTENSIONS=1 $(BIN)/python -m benchmarks.load suite --no-extensions \
		--label pure --out $(BENCH_OUT) $(BENCH_ARGS)
	$(BIN)/python -m benchmarks.load report $(BENCH_OUT)/native.json $(BENCH_OUT)/pure.json \
		--command "make bench$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')"
