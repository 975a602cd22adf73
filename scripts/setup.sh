#!/usr/bin/env bash
# Put everything `make demo` and `make test` need in place, skipping what is already there:
# Debian packages, the daemons, a virtualenv with pinned Python packages, the test guest, and the
# collection itself installed into .build/collections.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# One set-up at a time (parallel runs would install the collection over each other).
# NOVA_SETUP_LOCK names another lock file (a worktree of its own needs no other's lock).
exec 9>"${NOVA_SETUP_LOCK:-/tmp/nova-snapshots-setup.lock}"
flock 9

packages=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils libvirt-dev pkg-config
          gcc python3-dev python3-venv busybox-static cpio gzip qemu-guest-agent shellcheck
          virt-v2v)   # an independent reader of our OVA exports (tests)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "setup: Debian packages present"
fi

# The daemons outlive this script: they must not inherit (and so hold) its lock on fd 9.
scripts/daemons.sh 9>&-

# The virtualenv is brought in step only when the pinned requirements change (in place, so a
# run that uses it meanwhile keeps working).
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
if [ "$(cat .venv/.nova-stamp 2>/dev/null)" != "$want" ]; then
    echo "setup: installing requirements-dev.txt into .venv"
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
        .venv/bin/pip install -q --upgrade pip
    fi
    .venv/bin/pip install -q -r requirements-dev.txt
    echo "$want" > .venv/.nova-stamp
else
    echo "setup: .venv up to date"
fi

tests/guest/build.sh

# Install the collection the way users do (build a tarball, install it), when its files changed.
want=$( (git ls-files -co --exclude-standard 2>/dev/null || find . -type f -not -path './.*') \
        | sort | xargs -d '\n' sha256sum 2>/dev/null | sha256sum | cut -c1-16)
dest=.build/collections
if [ "$(cat "$dest/.nova-stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: building and installing the collection into $dest"
    rm -rf .build/dist "$dest.new" "$dest.old"
    mkdir -p .build/dist "$dest.new"
    .venv/bin/ansible-galaxy collection build --force --output-path .build/dist . >/dev/null
    # (its warning that the path is not configured is expected: the Makefile and tests point at it)
    if ! out=$(.venv/bin/ansible-galaxy collection install --force -p "$dest.new" .build/dist/nova-snapshots-*.tar.gz 2>&1); then
        echo "$out" >&2
        exit 1
    fi
    echo "$want" > "$dest.new/.nova-stamp"
    # Swap the new copy in whole: a playbook running meanwhile never sees a half-installed collection.
    [ -d "$dest" ] && mv "$dest" "$dest.old"
    mv "$dest.new" "$dest"
    rm -rf "$dest.old"
else
    echo "setup: collection in $dest up to date"
fi
