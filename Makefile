# Sandcat: `make run` starts the embedded server; `make test` runs the whole suite.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run run-distributed test lint typecheck install clean bench-micro native cargo-test

# Native hot paths (docs/native.md): the Cython framing builds in `pip install -e` (setup.py);
# the Rust crate builds with maturin into the venv. SANDCAT_DEBUG_BUILD=1 builds both without
# optimisation; SANDCAT_NO_EXTENSIONS=1 builds neither. A failed build warns and the server
# runs on the pure-Python twins. Cargo's target dir lives outside the clone, so a fresh clone
# (CI) reuses it.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/sandcat/cargo-target
CRATE := native/rust
NATIVE_STAMP := $(VENV)/.native-rust
MATURIN_PROFILE := $(if $(filter-out 0,$(SANDCAT_DEBUG_BUILD)),,--release)

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml setup.py $(wildcard native/cython/*.pyx)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

$(NATIVE_STAMP): $(STAMP) $(wildcard $(CRATE)/Cargo.* $(CRATE)/pyproject.toml $(CRATE)/*.pyi $(CRATE)/src/*.rs)
	@if [ -n "$$SANDCAT_NO_EXTENSIONS" ] && [ "$$SANDCAT_NO_EXTENSIONS" != 0 ]; then \
		echo "SANDCAT_NO_EXTENSIONS is set: Rust crate not built"; \
		$(BIN)/pip uninstall -q -y sandcat-native 2>/dev/null || true; \
	elif VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop $(MATURIN_PROFILE) \
			-m $(CRATE)/Cargo.toml >$(VENV)/native-build.log 2>&1; then \
		echo "Rust crate built ($(if $(MATURIN_PROFILE),release,debug))"; \
	else \
		tail -n 20 $(VENV)/native-build.log >&2; \
		echo "WARNING: Rust crate not built (log: $(VENV)/native-build.log);" \
			"shard hashing uses pure Python" >&2; \
		$(BIN)/pip uninstall -q -y sandcat-native 2>/dev/null || true; \
	fi
	@touch $@

install: $(STAMP) $(NATIVE_STAMP)

# Rebuild both extensions now (e.g. after switching SANDCAT_DEBUG_BUILD).
native: $(STAMP)
	$(BIN)/pip install -q --no-deps -e .  # rebuilds the Cython module (Cython lives in the build env)
	@rm -f $(NATIVE_STAMP)
	@$(MAKE) --no-print-directory $(NATIVE_STAMP)

cargo-test:
	cd $(CRATE) && cargo test -q

run: install
	$(BIN)/sandcat migrate
	$(BIN)/sandcat serve

run-distributed: install
	$(BIN)/python -m scripts.topology

test: install
	bash scripts/test.sh

lint: install
	$(BIN)/ruff check sandcat tests benchmarks scripts examples setup.py
	$(BIN)/ruff format --check sandcat tests benchmarks scripts examples setup.py

typecheck: install
	$(BIN)/mypy

# The fault-injection suite (docs/reliability.md): services and roles stopped, killed and
# restarted while a client stream runs. scripts/test.sh runs it on the services it started
# (SANDCAT_FAULTS_RUN_DIR); alone it starts its own and stops them afterwards.
.PHONY: test-faults
test-faults: install
	$(BIN)/pytest -q -p no:cacheprovider tests/faults

bench-micro: install
	$(BIN)/pytest benchmarks/micro -q --benchmark-only -p no:cacheprovider

clean:
	rm -rf $(VENV) build *.egg-info data

# The standard load suite against embedded servers it starts itself, with and without the
# compiled extensions, each run also driving the relay baseline (benchmarks/load/relay.py)
# for the server-CPU ratio; then docs/benchmarks.md and docs/plots/*.png are regenerated.
.PHONY: bench
BENCH_OUT := benchmarks/results/latest
# The distributed topology (services + api, two gateways, msg-server) for one-to-one, the
# 1,000-member group (50 messages per burst: bounded by the inbox's insert rate) and HTTP,
# with FerretDB on its PostgreSQL handler (faster here than its SQLite handler, the one
# `make test` starts: docs/performance.md); BENCH_DIST_HANDLER=sqlite for the other.
BENCH_DIST_HANDLER ?= pg
BENCH_DIST_ARGS ?= --register 1000 --scenarios one-to-one,group,http --users 200 --senders 50 \
	--group-sizes 1000 --burst-deliveries 50000 --repeats 2 --no-progress
bench: install
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.load suite --label native --baseline relay --out $(BENCH_OUT) \
		$(BENCH_ARGS)
	SANDCAT_NO_EXTENSIONS=1 $(BIN)/python -m benchmarks.load suite --no-extensions \
		--label pure --baseline relay --out $(BENCH_OUT) $(BENCH_ARGS)
	SANDCAT_MONGO_HANDLER=$(BENCH_DIST_HANDLER) $(BIN)/python -m benchmarks.load.distributed \
		--out $(BENCH_OUT) $(BENCH_DIST_ARGS)
	$(BIN)/python -m benchmarks.load.idle_profile --connections 100600 --processes 6 \
		--hold 10 > $(BENCH_OUT)/idle-100k.json
	$(BIN)/python -m benchmarks.load.storm --clients 19000 > $(BENCH_OUT)/storm.json
	$(BIN)/python -m benchmarks.load report $(BENCH_OUT)/native.json $(BENCH_OUT)/pure.json \
		$(BENCH_OUT)/distributed.json \
		--run-command "make bench$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')"
