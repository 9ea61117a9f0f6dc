#!/usr/bin/env bash
# Sets up langnav and runs its tests: the fast suite, then the slow end-to-end tests.
# -rs prints the reason of every skipped test (e.g. no Chromium for the HTML report check).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
python3 -m pytest -q -rs -m "not slow" --durations=25 tests
python3 -m pytest -q -rs -m slow --durations=25 tests
