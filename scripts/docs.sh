#!/usr/bin/env bash
# The documentation site: module, role and playbook pages from antsibull-docs, and the guides of
# docs/*.md (through myst-parser), built with Sphinx into .build/docs/build/html (index.html).
# Offline: intersphinx is off unless NOVA_DOCS_INTERSPHINX=1 (scripts/docsite/conf.py). Fails on
# any Sphinx warning. Documents the collection as users get it: built and installed from a tarball of
# this tree. Run through `make docs` (the tools come with .venv, from make setup).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export PATH=$top/.venv/bin:$PATH
out=$top/.build/docs
export ANSIBLE_COLLECTIONS_PATH=$out/collections
collection=$ANSIBLE_COLLECTIONS_PATH/ansible_collections/nova/snapshots
rm -rf "$out"
mkdir -p "$out/rst" "$out/dist"
ansible-galaxy collection build --output-path "$out/dist" . >/dev/null
ansible-galaxy collection install --force -p "$ANSIBLE_COLLECTIONS_PATH" "$out"/dist/*.tar.gz >/dev/null 2>&1
chmod og-w "$out/rst"   # antsibull-docs wants the directory writable only by itself

antsibull-docs collection --use-current --squash-hierarchy --fail-on-error --cleanup everything \
    --dest-dir "$out/rst" nova.snapshots

# antsibull-docs made a page per guide from docs/docsite/rst/ (a pointer to the Markdown); the site
# shows the guide itself under the same name and label instead.
for md in "$collection"/docs/*.md; do
    name=$(basename "$md" .md)
    page=$out/rst/docsite/$name.rst
    [ -f "$page" ] || { echo "docs: docs/$name.md has no page in docs/docsite/rst and extra-docs.yml" >&2; exit 1; }
    rm "$page"
    { printf '(ansible_collections.nova.snapshots.docsite.%s)=\n\n' "$name"; cat "$md"; } > "$out/rst/docsite/$name.md"
done

sphinx-build -q -b html -c "$top/scripts/docsite" -W --keep-going \
    "$out/rst" "$out/build/html"
echo "docs: $out/build/html/index.html"
