# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check the execution environment's build context (a step of `make release-check`).

Usage: check_ee.py TARBALL CONTEXT_DIR

Runs `ansible-builder create` for execution-environment.yml into CONTEXT_DIR (no container engine
is needed for that) and checks what it generated:
- the Containerfile starts from a pinned base image (a tag other than latest, or a digest) and pins
  ansible-core and ansible-runner;
- the galaxy requirements install nova.snapshots from a file in the build context, and that file is
  TARBALL byte for byte;
- ansible-builder's own introspect script, run on the collection installed from TARBALL (as the
  builder stage runs it), finds no Python or system requirement: nothing of the hypervisor's
  (libvirt-python, lxml, libvirt, qemu, gcc) reaches the EE. As a control, the same script on a copy
  without meta/execution-environment.yml does find libvirt-python, so this check can fail.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
HYPERVISOR = ('libvirt', 'lxml', 'cryptography', 'zstandard', 'qemu', 'gcc', 'pkg-config', 'pkgconf')


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def introspect(script, collections_dir):
    proc = subprocess.run([sys.executable, script, 'introspect', collections_dir], capture_output=True, text=True,
                          check=True)
    data = yaml.safe_load(proc.stdout) or {}
    return data.get('python') or [], data.get('system') or []


def main(tarball, context):
    problems = []
    shutil.rmtree(context, ignore_errors=True)
    subprocess.run([os.path.join(BIN, 'ansible-builder'), 'create', '-f', os.path.join(TOP, 'execution-environment.yml'),
                    '-c', context, '--output-filename', 'Containerfile'], check=True, cwd=TOP, stdout=subprocess.DEVNULL)
    with open(os.path.join(context, 'Containerfile')) as f:
        containerfile = f.read()

    base = re.search(r'^ARG EE_BASE_IMAGE="([^"]+)"', containerfile, re.M)
    if not base:
        problems.append('the Containerfile names no base image')
    elif not ('@sha256:' in base.group(1) or re.search(r':(?!latest$)[^/:]+$', base.group(1))):
        problems.append('base image %s is not pinned (a tag other than latest, or a digest)' % base.group(1))
    refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="([^"]*)"', containerfile, re.M)
    refs = refs.group(1).split() if refs else []
    for package in ('ansible-core', 'ansible-runner'):
        if not any(re.fullmatch(r'%s==[0-9][0-9.]*' % package, r) for r in refs):
            problems.append('%s is not pinned in the Containerfile (%s)' % (package, refs))

    with open(os.path.join(context, '_build', 'requirements.yml')) as f:
        galaxy = yaml.safe_load(f)
    files = [c for c in galaxy.get('collections', []) if c.get('type') == 'file']
    if len(files) != 1:
        problems.append('the EE installs %d collections from files, not nova.snapshots alone' % len(files))
    else:
        # The galaxy stage copies _build to /build and installs from there.
        shipped = os.path.join(context, '_build', files[0]['name'])
        if not os.path.isfile(shipped):
            problems.append('the EE installs %s, which is not in the build context' % files[0]['name'])
        elif sha256(shipped) != sha256(tarball):
            problems.append('the tarball in the build context is not %s' % tarball)

    script = os.path.join(context, '_build', 'scripts', 'introspect.py')
    with tempfile.TemporaryDirectory() as tmp:
        installed = os.path.join(tmp, 'collections')
        subprocess.run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '--force', '-p', installed, tarball],
                       check=True, capture_output=True, env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=installed))
        python, system = introspect(script, installed)
        for kind, reqs in (('Python', python), ('system', system)):
            for line in reqs:
                problems.append('the EE would get the %s requirement %r' % (kind, line))
        # Control: without its meta/execution-environment.yml, ansible-builder falls back to the
        # collection's requirements.txt (the hypervisor's) and this check must notice.
        os.remove(os.path.join(installed, 'ansible_collections', 'nova', 'snapshots', 'meta', 'execution-environment.yml'))
        python, system = introspect(script, installed)
        if not any(line.startswith('libvirt-python') for line in python):
            problems.append('control failed: without meta/execution-environment.yml introspect did not find libvirt-python')
        for line in python + system:
            if not any(word in line for word in HYPERVISOR):
                problems.append('control: unexpected requirement %r' % line)

    for p in problems:
        print('ee: ' + p)
    if not problems:
        print('ee: build context in %s: pinned base %s, %s; nova.snapshots from the built tarball; '
              'no hypervisor requirement' % (context, base.group(1), ' '.join(refs)))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
