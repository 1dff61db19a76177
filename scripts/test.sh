#!/usr/bin/env bash
# The whole suite, as `make test` and CI run it: lint, types, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
echo "== ruff"
$BIN/ruff check sandcat tests benchmarks scripts setup.py
echo "== mypy"
$BIN/mypy
echo "== services (PostgreSQL, Redis, Kafka, FerretDB, S3: installed and cached on first use)"
RUN_DIR="$(mktemp -d /tmp/sandcat-test-services.XXXXXX)"
trap '$BIN/python scripts/services.py stop --run-dir "$RUN_DIR" || true' EXIT
$BIN/python scripts/services.py start --run-dir "$RUN_DIR"
set -a
# shellcheck disable=SC1091
source "$RUN_DIR/services.env"
set +a
echo "== pytest"
$BIN/pytest -q -p no:cacheprovider tests
echo "== pytest, the protocol-only e2e suites against the distributed topology"
SANDCAT_E2E_TARGET=distributed $BIN/pytest -q -p no:cacheprovider -m "not embedded_only" \
    tests/e2e/test_chat.py tests/e2e/test_friends.py tests/e2e/test_groups.py tests/e2e/test_ws_edges.py
echo "== pytest, pure-Python twins (SANDCAT_NO_EXTENSIONS=1)"
PURE=(tests/unit tests/native)
[ -d tests/contracts ] && PURE+=(tests/contracts)
SANDCAT_NO_EXTENSIONS=1 $BIN/pytest -q -p no:cacheprovider "${PURE[@]}"
echo "== cargo test"
(cd native/rust && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sandcat/cargo-target}" cargo test -q)
