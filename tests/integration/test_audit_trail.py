# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit trail, the operation log and `timings` on real guests, through ansible-playbook.

One scenario on one running guest (create, branch, switch, revert, delete, a failure, check mode,
audit off, syslog forwarding, a small rotation size) and nova_audit_info over the trail it leaves;
then the same trail tampered with (an edited line, a deleted line); then two playbooks on two VMs
at once appending to one storage_dir.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import pytest

import testbed


SNAP = 'nova.snapshots.nova_snapshot'
TREE = 'nova.snapshots.nova_snapshot_tree'
INFO = 'nova.snapshots.nova_audit_info'
PHASES = ('plan', 'lock_wait', 'libvirt', 'qemu_img', 'store', 'apply')


@pytest.fixture(scope='module')
def scenario(conn, tmp_path_factory):
    """The guest, its operation log, the results of each step and the syslog datagram received."""
    work = tmp_path_factory.mktemp('audit')
    guest = testbed.Guest(conn, disks=1, disk_mib=32)
    sock_path = str(work / 'syslog.sock')
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(5)
    log_file = str(work / 'log' / 'snapshots.log')
    common = dict(domain=guest.name, storage_dir=guest.storage_dir, log_file=log_file, audit_max_size=2500)
    steps = []

    def play(*group):
        """Each (module, args, check, expect_ok) of `group`, in one playbook run."""
        results = testbed.run_tasks(work, [(module, dict(common, **args), check) for module, args, check, _ok in group])
        for (module, args, check, ok), result in zip(group, results):
            assert bool(result.get('failed')) is not ok, (args, result.get('msg'))
            steps.append((module, args, check, result))

    try:
        guest.start()
        play((SNAP, dict(name='s1', snapshot_type='disk_only', audit_syslog=True, audit_syslog_address=sock_path), False, True),
             (SNAP, dict(name='s1', snapshot_type='disk_only'), False, True))              # no change: no line
        datagram = sock.recv(65536)
        audit_path = os.path.join(guest.storage_dir, 'audit.log')
        before = (open(audit_path, 'rb').read(), open(log_file, 'rb').read())
        play((SNAP, dict(name='s2', snapshot_type='disk_only'), True, True))              # check mode: nothing written
        after_check = (open(audit_path, 'rb').read(), open(log_file, 'rb').read())
        play((SNAP, dict(name='s2', snapshot_type='disk_only', debug=True), False, True),
             (TREE, dict(state='branched', name='feature', **{'from': 's1'}), False, True),
             (TREE, dict(state='switched', name='feature'), False, True),
             (TREE, dict(state='switched', name='main'), False, True),
             (SNAP, dict(state='reverted', name='s1', after='running'), False, True),
             (SNAP, dict(state='reverted', name='no-such-snapshot'), False, False),        # a failure is audited too
             (SNAP, dict(state='absent', name='s2', audit=False), False, True),            # explicitly off: no line
             (SNAP, dict(state='absent', name='s1'), False, True))
        yield dict(guest=guest, steps=steps, log_file=log_file, datagram=datagram, audit_path=audit_path,
                   check=(before, after_check), work=work)
    finally:
        sock.close()
        guest.cleanup()


@pytest.fixture
def trail(run_module):
    """trail(storage_dir, **filters): nova_audit_info's result (read-only, so run in-process)."""
    return lambda storage_dir, **filters: run_module(INFO, storage_dir=storage_dir, **filters)


def all_lines(storage_dir):
    files = sorted((p for p in os.listdir(storage_dir) if p.startswith('audit.log')),
                   key=lambda p: -int(p.rsplit('.', 1)[1]) if p[-1].isdigit() else 0)
    return [(p, open(os.path.join(storage_dir, p), 'rb').read().splitlines()) for p in files]


def every_change_and_failure_has_one_line_and_the_chain_verifies(scenario, trail):
    guest = scenario['guest']
    got = trail(guest.storage_dir)
    assert not got.get('failed'), got.get('msg')
    assert got['verified'] is True and got['broken'] is None
    ops = [(r['operation'], r['snapshots'], r['branches'], r['result']['changed'], r['result']['failed'])
           for r in got['records']]
    assert ops == [
        ('create', ['s1'], [], True, False),
        ('create', ['s2'], [], True, False),
        ('branch', ['s1'], ['feature'], True, False),
        ('switch', [], ['feature'], True, False),
        ('switch', [], ['main'], True, False),
        ('revert', ['s1'], [], True, False),
        ('revert', ['no-such-snapshot'], [], False, True),
        ('delete', ['s1'], [], True, False),
    ]
    first, failed = got['records'][0], got['records'][6]
    assert first['domain'] == guest.name and first['module'] == 'nova_snapshot' and first['state'] == 'present'
    assert first['who']['user'] == 'root' and first['who']['controller_user'] == 'root'
    assert first['parameters']['name'] == 's1' and 'audit_context' not in first['parameters']
    assert first['result']['actions'] and first['host'] == socket.gethostname()
    assert "no snapshot named 'no-such-snapshot'" in failed['result']['msg']
    assert [r['seq'] for r in got['records']] == list(range(1, 9))
    # a small audit_max_size: the scenario's lines were rotated across files, the chain carried over
    assert len(got['files']) >= 3 and got['files'][-1].endswith('/audit.log')


def audit_info_filters(scenario, trail):
    guest = scenario['guest']
    assert [r['seq'] for r in trail(guest.storage_dir, operation='switch')['records']] == [4, 5]
    assert [r['seq'] for r in trail(guest.storage_dir, operation='nova_snapshot_tree')['records']] == [3, 4, 5]
    assert trail(guest.storage_dir, domain='novatest-nobody')['records'] == []
    assert len(trail(guest.storage_dir, who='root')['records']) == 8
    assert trail(guest.storage_dir, since='2999-01-01')['records'] == []
    assert len(trail(guest.storage_dir, until='2999-01-01T00:00')['records']) == 8
    bad = trail(guest.storage_dir, since='last tuesday')
    assert bad['failed'] and 'is not a time' in bad['msg']


def check_mode_writes_nothing_and_syslog_gets_the_line(scenario):
    before, after = scenario['check']
    assert before == after
    first = all_lines(scenario['guest'].storage_dir)[0][1][0]
    assert scenario['datagram'].startswith(b'<86>nova.snapshots[') and scenario['datagram'].endswith(b': ' + first)


def every_result_has_plausible_timings(scenario):
    for module, args, check, result in scenario['steps']:
        t = result['timings']
        assert set(PHASES) | {'total'} <= set(t), (module, args, t)
        assert all(v >= 0 for v in t.values())
        assert sum(t[p] for p in PHASES) <= t['total'] + 0.002, (module, args, t)
        assert t['total'] < 120
        if result.get('changed') and not check:
            assert t['libvirt'] > 0 and t['apply'] >= 0 and t['store'] > 0, (args, t)
    create = scenario['steps'][0][3]['timings']
    assert create['libvirt'] + create['qemu_img'] + create['store'] + create['plan'] > 0.01


def the_operation_log_has_a_line_per_step_and_debug_adds_the_calls(scenario):
    guest = scenario['guest']
    text = open(scenario['log_file']).read()
    lines = text.splitlines()
    assert all(line[:4].isdigit() and line[19] == 'Z' for line in lines)
    mine = [line for line in lines if ' %s: ' % guest.name in line]
    starts = [line for line in mine if line.endswith(')') and ': start (' in line]
    assert len(starts) == 10       # every run but the check-mode one
    creating = [line for line in mine if 'libvirt creating a snapshot (' in line]
    assert len(creating) == 2      # s1 and s2, each with its duration
    assert any(' apply ' in line and 'take disk_only snapshot s2' in line for line in mine)
    assert any('failed after' in line and 'no-such-snapshot' in line for line in mine)
    assert any('audit: false on this task' in line for line in mine)
    # debug (the s2 task only) adds the reads and the store writes; without it, reads are not steps
    # (the delete and the switches read images with qemu-img info: no line for those)
    # a line is '<time>Z [<pid>] ...': the pid alone (a task's lines can span seconds on a busy host)
    debug_pid = [line.split()[1] for line in mine if 'take disk_only snapshot s2' in line][0]
    reads = [line for line in mine if 'reading the definition [XMLDesc]' in line]
    assert reads and all(line.split()[1] == debug_pid for line in reads)
    assert not [line for line in mine if 'qemu-img info' in line]
    assert [line for line in mine if 'qemu-img create' in line]
    assert any(debug_pid in line and 'store writing ' in line for line in mine)
    assert 'done: changed=True' in text


def an_edited_line_and_a_deleted_line_are_found_with_their_line_number(scenario, trail, tmp_path):
    store = str(tmp_path / 'store')
    os.mkdir(store)
    for name in os.listdir(scenario['guest'].storage_dir):
        if name.startswith('audit.log'):
            shutil.copy(os.path.join(scenario['guest'].storage_dir, name), store)
    files = all_lines(store)
    name, lines = files[-1]
    assert len(lines) >= 2
    path = os.path.join(store, name)
    edited = list(lines)
    edited[1] = edited[1].replace(b'"host":"', b'"host":"x', 1)
    assert edited[1] != lines[1]
    open(path, 'wb').write(b'\n'.join(edited) + b'\n')
    got = trail(store)
    assert got['verified'] is False
    assert got['broken']['file'] == path and got['broken']['line'] == 2
    assert 'changed after it was written' in got['broken']['reason']
    assert all(r.get('trusted') is False for r in got['records'][-len(lines) + 1:])
    assert trail(store, fail_on_broken=True)['failed']

    deleted = list(lines)
    del deleted[0]
    open(path, 'wb').write(b'\n'.join(deleted) + b'\n')
    got = trail(store)
    assert got['broken']['file'] == path and got['broken']['line'] == 1
    assert 'missing' in got['broken']['reason']

    open(path, 'wb').write(b'\n'.join(lines) + b'\n')
    assert trail(store)['verified'] is True


PLAY = '''
- hosts: localhost
  gather_facts: false
  tasks:
    - name: snapshots, one after the other
      nova.snapshots.nova_snapshot:
        domain: {domain}
        name: "c{{{{ item }}}}"
        snapshot_type: disk_only
        storage_dir: {store}
        log_file: {log}
      loop: [1, 2, 3, 4]
      vars:
        awx_job_id: {job}
        awx_user_name: carol
'''


def test_two_playbooks_on_two_vms_at_once_leave_a_well_formed_verified_trail(conn, make_guest, trail, tmp_path):
    store = str(tmp_path / 'shared')
    guests = [make_guest(disks=1, running=False, disk_mib=16) for _guest in range(2)]
    env = testbed.ansible_env()
    procs = []
    for job, g in enumerate(guests, 100):
        play = tmp_path / ('play-%d.yml' % job)
        play.write_text(PLAY.format(domain=g.name, store=store, log=tmp_path / 'op.log', job=job))
        procs.append(subprocess.Popen([os.path.join(testbed.TOP, '.venv', 'bin', 'ansible-playbook'), '-i', 'localhost,',
                                       '-c', 'local', str(play)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    for p in procs:
        out = p.communicate(timeout=300)[0]
        assert p.returncode == 0, out.decode()[-3000:]
    got = trail(store)
    assert got['verified'] is True, got['broken']
    assert [r['seq'] for r in got['records']] == list(range(1, 9))
    for job, g in enumerate(guests, 100):
        mine = [r for r in got['records'] if r['domain'] == g.name]
        assert [r['snapshots'] for r in mine] == [['c1'], ['c2'], ['c3'], ['c4']]
        assert all(r['who']['awx_job_id'] == str(job) and r['who']['awx_user_name'] == 'carol' for r in mine)
    assert [r['seq'] for r in trail(store, who='100')['records']] == \
        [r['seq'] for r in got['records'] if r['who']['awx_job_id'] == '100']
    raw = open(os.path.join(store, 'audit.log'), 'rb').read()
    assert raw.endswith(b'\n') and all(json.loads(line) for line in raw.splitlines())


def test_one_scenario_on_a_running_guest(scenario, tmp_path, trail):
    """The checks of the shared scenario, as one test: pytest-xdist would otherwise build the
    scenario once per worker."""
    every_change_and_failure_has_one_line_and_the_chain_verifies(scenario, trail)
    audit_info_filters(scenario, trail)
    check_mode_writes_nothing_and_syslog_gets_the_line(scenario)
    every_result_has_plausible_timings(scenario)
    the_operation_log_has_a_line_per_step_and_debug_adds_the_calls(scenario)
    an_edited_line_and_a_deleted_line_are_found_with_their_line_number(scenario, trail, tmp_path)
