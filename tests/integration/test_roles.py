# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roles' molecule scenarios, each against this machine's real libvirtd (`molecule test`:
create a test guest, prepare, check mode, converge, idempotence, verify, destroy).

The roles and modules come from the collection as installed in .build/collections, as for every
integration test; each scenario's playbooks are in roles/<role>/molecule/default/.
"""

from __future__ import annotations

import os
import subprocess

import pytest

import testbed

ROLES = ['snapshot_schedule', 'snapshot_retention', 'snapshot_consolidation']


def _failures(out):
    """The lines around each failed task, which molecule's long output buries."""
    lines = out.splitlines()
    hits = [i for i, line in enumerate(lines) if line.startswith(('fatal:', 'failed:', '[ERROR]'))]
    return [line for i in hits for line in lines[max(0, i - 3):i + 12]][:200]


@pytest.mark.parametrize('role', ROLES)
def test_molecule_scenario(conn, role):
    # `conn` first removes novatest-* domains a killed run left, such as a scenario's guest.
    venv_bin = os.path.join(testbed.TOP, '.venv', 'bin')
    env = dict(os.environ, PATH=venv_bin + os.pathsep + os.environ.get('PATH', ''),
               ANSIBLE_COLLECTIONS_PATH=testbed.COLLECTIONS, NO_COLOR='1', ANSIBLE_NOCOLOR='1',
               ANSIBLE_FORCE_COLOR='0', MOLECULE_NO_LOG='false')
    proc = subprocess.run([os.path.join(venv_bin, 'molecule'), 'test'], cwd=os.path.join(testbed.TOP, 'roles', role),
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, 'molecule test of %s failed (rc=%d):\n%s\n...\n%s' % (
        role, proc.returncode, '\n'.join(_failures(out)), out[-2000:])
    for action in ('create', 'prepare', 'check', 'converge', 'idempotence', 'verify', 'destroy'):
        assert '%s: Executed: Successful' % action in out, 'molecule did not run %s for %s:\n%s' % (action, role, out[-3000:])
