#!/usr/bin/env bash
# Every test: ansible-test sanity, then unit and integration tests in one pytest run, so the
# run ends with pytest's summary line. Exits non-zero on any failure. Run through `make test`,
# which first puts everything in place (scripts/setup.sh).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1

echo "== ansible-test sanity"
scripts/sanity.sh > .build/sanity.log 2>&1
sanity=$?
if [ $sanity -ne 0 ]; then
    grep -E '^(ERROR|FATAL)' .build/sanity.log
    echo "sanity failed: full log in .build/sanity.log"
else
    grep -c '^Running sanity test' .build/sanity.log | xargs printf 'sanity: %s tests clean\n'
fi

echo "== unit and integration tests (pytest, two workers: the guests mostly wait, so two cores serve two)"
.venv/bin/pytest -n 2 --durations=15 tests/unit tests/integration
pytest_rc=$?
[ $sanity -eq 0 ] && [ $pytest_rc -eq 0 ]
