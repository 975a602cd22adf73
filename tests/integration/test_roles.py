# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roles' molecule scenarios, each against this machine's real libvirtd (`molecule test`:
create a test guest, prepare, check mode, converge, idempotence, verify, destroy).

The roles and modules come from the collection as installed in .build/collections, as for every
integration test; each scenario's playbooks are in roles/<role>/molecule/default/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

import testbed

ROLES = ['snapshot_schedule', 'snapshot_retention', 'snapshot_consolidation', 'snapshot_verification']


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


# -- the schedule role's calendar, without libvirt ------------------------------------------------
# (spec, OnCalendar, cron time fields, cron guard); every spelling nova_policy accepts.
CALENDAR = [
    ('hourly', True, '*-*-* *:00:00', '0 * * * *', ''),
    ('daily', '02:00', '*-*-* 02:00:00', '0 2 * * *', ''),
    ('daily', '7:05', '*-*-* 07:05:00', '5 7 * * *', ''),
    ('weekly', 'sunday 03:00', 'Sun *-*-* 03:00:00', '0 3 * * 0', ''),
    ('weekly', 'Sat 23:59', 'Sat *-*-* 23:59:00', '59 23 * * 6', ''),
    ('monthly', 'first-sunday 04:00', 'Sun *-*-01..07 04:00:00', '0 4 1-7 * *', '[ "$(date +\\%w)" = 0 ]'),
    ('monthly', 'second-tue 01:00', 'Tue *-*-08..14 01:00:00', '0 1 8-14 * *', '[ "$(date +\\%w)" = 2 ]'),
    ('monthly', 'fourth-wednesday 12:30', 'Wed *-*-22..28 12:30:00', '30 12 22-28 * *', '[ "$(date +\\%w)" = 3 ]'),
    ('monthly', 'last-friday 05:00', 'Fri *-*~07/1 05:00:00', '0 5 22-31 * *',
     '[ "$(date +\\%w)" = 5 ] && [ "$(date -d "+7 days" +\\%d)" -le 7 ]'),
    ('monthly', '28 04:30', '*-*-28 04:30:00', '30 4 28 * *', ''),
    ('yearly', '01-01 05:00', '*-01-01 05:00:00', '0 5 1 1 *', ''),
    ('yearly', '12-31 23:00', '*-12-31 23:00:00', '0 23 31 12 *', ''),
]
BAD = [('daily', '25:00'), ('weekly', 'sunday'), ('monthly', 'fifth-sunday 04:00'), ('monthly', '29 04:00'),
       ('yearly', '13-01 05:00')]


def test_schedule_calendar(tmp_path):
    """The OnCalendar expressions and cron lines the snapshot_schedule role derives from schedules."""
    role = os.path.join(testbed.TOP, 'roles', 'snapshot_schedule')
    policies = [{'name': 'p%d' % i, 'domains': ['x'], 'schedule': {kind: spec}}
                for i, (kind, spec, _c, _t, _g) in enumerate(CALENDAR + [b + (None, None, None) for b in BAD])]
    out = tmp_path / 'calendar.json'
    play = [{'hosts': 'localhost', 'gather_facts': False,
             'vars_files': [os.path.join(role, 'defaults', 'main.yml'), os.path.join(role, 'vars', 'main.yml')],
             'tasks': [{'ansible.builtin.copy': {
                 'dest': str(out), 'mode': '0644',
                 'content': '{{ {"calendar": _snapshot_schedule_calendar, "problems": _snapshot_schedule_problems} | to_json }}'}}]}]
    playbook = tmp_path / 'calendar.yml'
    playbook.write_text(json.dumps(play))
    proc = subprocess.run([os.path.join(testbed.TOP, '.venv', 'bin', 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
                           '-e', json.dumps({'nova_snapshot_policies': policies}), str(playbook)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env=dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=os.path.join(testbed.TOP, '.venv', 'bin', 'python')))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())
    entries = {e['policy']: e for e in got['calendar']}
    for i, (kind, spec, oncalendar, cron, guard) in enumerate(CALENDAR):
        e = entries['p%d' % i]
        assert (e['kind'], e['oncalendar'], e['cron'], e['guard'], e['error']) == (kind, oncalendar, cron, guard, ''), spec
        if shutil.which('systemd-analyze'):
            subprocess.run(['systemd-analyze', 'calendar', oncalendar], check=True, capture_output=True)
    for j, (kind, spec) in enumerate(BAD):
        name = 'p%d' % (len(CALENDAR) + j)
        assert entries[name]['error'], spec
        assert any(p.startswith('policy "%s", schedule.%s "%s": ' % (name, kind, spec)) for p in got['problems']), got['problems']
