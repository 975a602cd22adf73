#!/usr/bin/env bash
# What Galaxy, Automation Hub and the ecosystem's validators ask of the collection, each with zero
# findings: the tarball (build, contents, install, verify), galaxy-importer with Automation Hub's
# settings, ansible-lint's production profile, antsibull-changelog lint, antsibull-docs lint, the
# execution environment's build context, and ansible-test sanity on the oldest and the newest
# ansible-core that meta/runtime.yml admits and Python 3.11 runs (2.18 from .build/venv-ansible-2.18,
# 2.19 from .venv). Runs every step, prints one line per step, and exits non-zero if any failed;
# logs in .build/release/. Run through `make release-check` (or `make test`), after make setup.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
export PATH=$top/.venv/bin:$PATH
out=$top/.build/release
rm -rf "$out"
mkdir -p "$out"
failed=()
SECONDS=0

step() {  # step NAME COMMAND...: run it, its output in $out/NAME.log
    local name=$1 start=$SECONDS
    shift
    if "$@" > "$out/$name.log" 2>&1; then
        printf 'release-check: %-22s ok (%ds)\n' "$name" $((SECONDS - start))
    else
        printf 'release-check: %-22s FAILED (%ds), log in %s:\n' "$name" $((SECONDS - start)) "${out#"$top"/}/$name.log"
        grep -vE '^WARNING: Location .* is ignored' "$out/$name.log" | tail -n 25 | sed 's/^/    /'
        failed+=("$name")
    fi
}

version=$(python -c "import yaml; print(yaml.safe_load(open('galaxy.yml'))['version'])")
tarball=$top/.build/dist/nova-snapshots-$version.tar.gz
collections=$out/collections

build() {
    mkdir -p .build/dist
    ansible-galaxy collection build --force --output-path .build/dist . || return 1
    # What users get: what they run, the docs, and nothing of the repository's tests and tools.
    local listing bad
    listing=$(tar tzf "$tarball") || return 1
    bad=$(grep -E '^(tests|bench|scripts|demo|ee|\.ci|\.git[^/]*|context|docs/docsite/build)(/|$)|(^|/)molecule(/|$)|^(Makefile|conftest\.py|pytest\.ini|requirements-[^/]*\.txt|execution-environment\.yml|\.ansible-lint)$|__pycache__|\.pyc$' <<< "$listing")
    [ -z "$bad" ] || { echo "not for users, but in the tarball:"; echo "$bad"; return 1; }
    for f in LICENSE README.md CHANGELOG.rst changelogs/changelog.yaml meta/runtime.yml meta/execution-environment.yml \
             playbooks/enforce_policy.yml; do
        grep -qx "$f" <<< "$listing" || { echo "missing from the tarball: $f"; return 1; }
    done
    echo "$(wc -l <<< "$listing") entries, $(stat -c %s "$tarball") bytes"
}

install_verify() {
    ANSIBLE_COLLECTIONS_PATH=$collections ansible-galaxy collection install --force -p "$collections" "$tarball" || return 1
    ANSIBLE_COLLECTIONS_PATH=$collections ansible-galaxy collection verify --offline -p "$collections" nova.snapshots || return 1
    # verify must notice a changed file (else it proves nothing)
    local copy=$out/verify-control
    cp -a "$collections" "$copy"
    echo '# changed' >> "$copy/ansible_collections/nova/snapshots/meta/runtime.yml"
    if ANSIBLE_COLLECTIONS_PATH=$copy ansible-galaxy collection verify --offline -p "$copy" nova.snapshots; then
        echo "control failed: verify accepted a changed file"; return 1
    fi
    rm -rf "$copy"
}

importer() {
    local log=$out/importer-output.log
    (cd "$out" && GALAXY_IMPORTER_CONFIG=$top/scripts/galaxy-importer.cfg HOME=$out/home \
        python -m galaxy_importer.main "$tarball") > "$log" 2>&1 || { cat "$log"; return 1; }
    cat "$log"
    # zero findings: no warning or error line at all
    ! grep -iE 'warning|error' "$log" | grep -vE '^Loading module_utils model\._errors$' \
        || { echo "galaxy-importer reported the lines above"; return 1; }
    grep -q 'Importer processing completed successfully' "$log"
}

lint() {
    # (the modules resolve in the copy installed from the tarball)
    ANSIBLE_COLLECTIONS_PATH=$collections ansible-lint --offline --nocolor -f pep8 --profile production || return 1
    # every rule skipped or warned about in .ansible-lint carries a reason on its line
    python - <<'PY'
import sys, yaml
cfg = yaml.safe_load(open('.ansible-lint'))
lines = open('.ansible-lint').read().splitlines()
bad = []
for key in ('skip_list', 'warn_list'):
    for rule in cfg.get(key) or []:
        line = next((l for l in lines if l.strip().startswith('- ' + rule)), '')
        if '#' not in line or not line.split('#', 1)[1].strip():
            bad.append('%s: %s has no reason' % (key, rule))
print('\n'.join(bad))
sys.exit(1 if bad else 0)
PY
}

changelog() {
    antsibull-changelog lint || return 1
    antsibull-changelog lint-changelog-yaml --strict changelogs/changelog.yaml || return 1
    # the released version is the one galaxy.yml builds
    python -c "import yaml, sys; d = yaml.safe_load(open('changelogs/changelog.yaml')); sys.exit('$version' not in d['releases'])" \
        || { echo "changelogs/changelog.yaml has no release $version"; return 1; }
}

docs_lint() {
    ANSIBLE_COLLECTIONS_PATH=$collections antsibull-docs lint-collection-docs --plugin-docs \
        "$collections/ansible_collections/nova/snapshots"
}

sanity() {  # sanity VENV: ansible-test sanity with that venv's ansible-core
    NOVA_SANITY_VENV=$1 scripts/sanity.sh
}

oldest_venv() {  # the venv of the oldest ansible-core, brought in step with its pinned file
    local venv=$top/.build/venv-ansible-2.18 want
    want=$(sha256sum < requirements-sanity-2.18.txt | cut -c1-16)
    if [ "$(cat "$venv/.nova-stamp" 2>/dev/null)" != "$want" ]; then
        [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || return 1
        "$venv/bin/pip" install -q -r requirements-sanity-2.18.txt || return 1
        echo "$want" > "$venv/.nova-stamp"
    fi
}

step build build
step install-verify install_verify
step galaxy-importer importer
step ansible-lint lint
step antsibull-changelog changelog
step antsibull-docs docs_lint
step ee python scripts/check_ee.py "$tarball" "$out/ee-context"
step venv-ansible-2.18 oldest_venv
step sanity-2.18 sanity "$top/.build/venv-ansible-2.18"
step sanity-2.19 sanity "$top/.venv"

if [ ${#failed[@]} -gt 0 ]; then
    echo "release-check: FAILED: ${failed[*]} ($SECONDS s)"
    exit 1
fi
echo "release-check: all clean ($SECONDS s)"
