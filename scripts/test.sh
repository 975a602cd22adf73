#!/usr/bin/env bash
# Every test: the release check (which runs ansible-test sanity on the oldest and the newest
# ansible-core the collection admits), then unit and integration tests in one pytest run, so the
# run ends with pytest's summary line. Exits non-zero on any failure. Run through `make test`,
# which first puts everything in place (scripts/setup.sh).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1

echo "== release check (ansible-test sanity on ansible-core 2.18 and 2.19, galaxy-importer, ansible-lint, ...)"
scripts/release-check.sh
release=$?

echo "== unit and integration tests (pytest, two workers: the guests mostly wait, so two cores serve two)"
mkdir -p .build/test-results     # per-test times (JUnit XML) for finding what makes the run long
.venv/bin/pytest -n 2 --durations=15 --junitxml=.build/test-results/main.xml tests/unit tests/integration
pytest_rc=$?

echo "== the fleet: three hypervisors on this machine, reached over ssh (one pytest process: they share the fleet)"
.venv/bin/pytest --durations=5 --junitxml=.build/test-results/fleet.xml tests/fleet
fleet_rc=$?
[ $release -eq 0 ] && [ $pytest_rc -eq 0 ] && [ $fleet_rc -eq 0 ]
