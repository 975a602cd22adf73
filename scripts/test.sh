#!/usr/bin/env bash
# Every test: unit and integration tests in one pytest run, the release check (ansible-test sanity
# on the oldest and the newest ansible-core the collection admits, and the validators) beside it,
# then the fleet tests. Exits non-zero on any failure. Run through `make test`, which first puts
# everything in place (scripts/setup.sh).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1

# The release check works on its own copies (.build/release) and mostly waits for one core, so it
# runs beside the tests rather than before them (the suite must hold under load anyway); its
# report follows pytest's.
mkdir -p .build/test-results     # per-test times (JUnit XML) for finding what makes the run long
scripts/release-check.sh > .build/test-results/release-check.log 2>&1 &
release_pid=$!

echo "== unit and integration tests (pytest, two workers: the guests mostly wait, so two cores serve two)"
.venv/bin/pytest -n 2 --durations=15 --junitxml=.build/test-results/main.xml tests/unit tests/integration
pytest_rc=$?

echo "== release check (ansible-test sanity on ansible-core 2.18 and 2.19, galaxy-importer, ansible-lint, ...)"
wait $release_pid
release=$?
cat .build/test-results/release-check.log

echo "== the fleet: three hypervisors on this machine, reached over ssh (one pytest process: they share the fleet)"
.venv/bin/pytest --durations=5 --junitxml=.build/test-results/fleet.xml tests/fleet
fleet_rc=$?
[ $release -eq 0 ] && [ $pytest_rc -eq 0 ] && [ $fleet_rc -eq 0 ]
