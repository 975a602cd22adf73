#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection's files laid out as ansible-test wants
# (ansible_collections/nova/snapshots). Ignore files stay empty: fix causes, do not hide them.
# NOVA_SANITY_VENV picks the virtualenv whose ansible-test runs (default .venv; make release-check
# runs the oldest ansible-core that meta/runtime.yml admits from a venv of its own).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
venv=${NOVA_SANITY_VENV:-$top/.venv}
# Outside the repository: inside it, ansible-test would ask git and see only ignored files.
# A directory of its own per run, so runs side by side do not pull the files from under each other.
base=$(mktemp -d "${TMPDIR:-/tmp}/nova-snapshots-sanity.XXXXXX")
trap 'rm -rf "$base"' EXIT
dest=$base/ansible_collections/nova/snapshots
mkdir -p "$dest"
git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$dest"
cd "$dest"
# ansible-test bootstraps pip in its venvs with a script from a host we cannot reach; give it ours.
pip_version=$("$venv/bin/python" - <<'PY'
import re, ansible_test, os
src = open(os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')).read()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)
cache=~/.ansible/test/cache/get_pip_${pip_version//./_}.py
[ -f "$cache" ] || install -D -m 0644 "$top/scripts/get_pip_offline.py" "$cache"
"$venv/bin/ansible-test" sanity --venv --requirements --python 3.11 --color no "$@"
