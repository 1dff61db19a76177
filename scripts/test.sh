#!/usr/bin/env bash
# The whole suite, as `make test` and CI run it: lint, types, Rust tests, then every Python
# test against real services (once with the native extensions, the protocol-only e2e suites
# again against a distributed topology, and unit/native/contract tests on the pure twins).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
SUMMARY="$(mktemp /tmp/sandcat-test-summary.XXXXXX)"

# Run pytest, keep its closing line for the total at the end.
run_pytest() {
    local status=0
    "$@" 2>&1 | tee "$SUMMARY.last" || status=$?
    tail -n 1 "$SUMMARY.last" >> "$SUMMARY"
    return "$status"
}

echo "== ruff"
$BIN/ruff check sandcat tests benchmarks scripts examples setup.py
echo "== mypy"
$BIN/mypy
echo "== cargo test"
(cd native/rust && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sandcat/cargo-target}" cargo test -q)
echo "== chromium (tests/browser drives the system's package, never a downloaded browser)"
if [ ! -x /usr/bin/chromium ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "== services (PostgreSQL, Redis, Kafka, FerretDB, S3: installed and cached on first use)"
RUN_DIR="$(mktemp -d /tmp/sandcat-test-services.XXXXXX)"
trap '$BIN/python scripts/services.py stop --run-dir "$RUN_DIR" >/dev/null 2>&1 || true' EXIT
$BIN/python scripts/services.py start --run-dir "$RUN_DIR"
set -a
# shellcheck disable=SC1091
source "$RUN_DIR/services.env"
set +a
echo "== pytest"
run_pytest $BIN/pytest -q -p no:cacheprovider --ignore=tests/faults tests
echo "== make test-faults (stops and restarts these services one at a time)"
SANDCAT_FAULTS_RUN_DIR="$RUN_DIR" run_pytest make --no-print-directory test-faults
echo "== pytest, the protocol-only e2e suites against the distributed topology"
SANDCAT_E2E_TARGET=distributed run_pytest $BIN/pytest -q -p no:cacheprovider \
    -m "not embedded_only" \
    tests/e2e/test_chat.py tests/e2e/test_friends.py tests/e2e/test_groups.py tests/e2e/test_ws_edges.py \
    tests/e2e/test_hostile_input.py tests/e2e/test_protocol_v2.py \
    tests/e2e/test_conversations.py tests/e2e/test_devices.py tests/e2e/test_bots.py \
    tests/e2e/test_oauth.py tests/e2e/test_original_client_beside_v2.py tests/e2e/test_new_routes_input.py
echo "== pytest, pure-Python twins (SANDCAT_NO_EXTENSIONS=1)"
PURE=(tests/unit tests/native tests/contracts)
SANDCAT_NO_EXTENSIONS=1 run_pytest $BIN/pytest -q -p no:cacheprovider "${PURE[@]}"
$BIN/python scripts/services.py stop --run-dir "$RUN_DIR" >/dev/null 2>&1 || true
trap - EXIT
# One closing line over every pytest pass (all of them passed to get here).
$BIN/python - "$SUMMARY" <<'PY'
import re, sys
totals = {"passed": 0, "failed": 0, "skipped": 0}
for line in open(sys.argv[1], encoding="utf-8"):
    for count, word in re.findall(r"(\d+) (passed|failed|skipped)", line):
        totals[word] += int(count)
print(f"tests: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
PY
rm -f "$SUMMARY" "$SUMMARY.last"
