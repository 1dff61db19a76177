#!/usr/bin/env bash
# The whole suite, as `make test` and CI run it: lint, types, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
echo "== ruff"
$BIN/ruff check sandcat tests benchmarks scripts setup.py
echo "== mypy"
$BIN/mypy
echo "== pytest"
$BIN/pytest -q -p no:cacheprovider tests
