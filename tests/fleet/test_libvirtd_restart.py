# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirtd restarted while a task, or the block job it started, runs: the task fails clearly (or
completes), the next run converges, and the guest's data is all there.

The restart needs a daemon of our own (the machine's is shared by every test), so it is done on a
fleet host: its libvirtd is stopped and started again while the task waits at a crash point (see
model/_crash.py). QEMU outlives the restart, as on a real host, and libvirtd reconnects to it."""

from __future__ import annotations

import os
import time
import uuid

import ansible_runner
import yaml

import fleetbed
from testbed import assert_markers, write_markers

from ansible_collections.nova.snapshots.plugins.module_utils.model import _crash as crash

TASK = 'The task under test'


def play(host, module, args, environment=None):
    task = {'name': TASK, module: args, 'ignore_errors': True}
    if environment:
        task['environment'] = environment
    return [{'hosts': host.name, 'gather_facts': False, 'tasks': [task]}]


def result_of(job, host):
    """The task's result on `host`, with `failed` set from the job's events (an ignored failure's
    result does not always carry it)."""
    res = dict(job.task_results(TASK)[host.name])
    res['failed'] = any(e.get('event') == 'runner_on_failed' and e['event_data'].get('task') == TASK
                        and e['event_data'].get('host') == host.name for e in job.events)
    return res


def run(tmp_path, inventory, host, module, args):
    job = fleetbed.run_job(tmp_path, 'task', inventory, play=play(host, module, args))
    assert job.status == 'successful', job.stdout[-3000:]
    return result_of(job, host)


def start_held(tmp_path, inventory, host, module, args, point):
    """The task started over ssh in the background; returns (thread, runner) once it waits at `point`."""
    hold = str(tmp_path / ('held-' + uuid.uuid4().hex[:6]))      # /tmp: the same file inside the host
    data = str(tmp_path / ('runner-' + uuid.uuid4().hex[:6]))
    os.makedirs(os.path.join(data, 'project'))
    with open(os.path.join(data, 'project', 'held.yml'), 'w') as f:
        yaml.safe_dump(play(host, module, args, {crash.HOLD_ENV: point, crash.HOLD_FILE_ENV: hold}), f)
    thread, runner = ansible_runner.run_async(
        private_data_dir=data, playbook='held.yml', inventory=inventory, quiet=True, timeout=300,
        envvars=fleetbed.runner_env())
    deadline = time.time() + 120
    while not os.path.exists(hold):
        assert thread.is_alive() and time.time() < deadline, 'the task never reached %s' % point
        time.sleep(0.1)
    return thread, runner, hold


def restart_libvirtd(host, guest):
    host.stop_libvirt()
    host.start_libvirt()
    guest.refresh()


def test_libvirtd_restarted_while_an_active_commit_waits_for_its_pivot(tmp_path, hosts, inventory, make_fleet_guest):
    hv1 = hosts[0]
    inv = inventory(hosts=[hv1])
    guest = make_fleet_guest(hv1, running=True)
    write_markers(guest, 1)
    for step in (2, 3):     # layers made by hand (virsh, no metadata): consolidation merges them away
        layer = os.path.join(guest.inside_dir, 'layer%d.qcow2' % step)
        hv1.exec('virsh', '-q', 'snapshot-create-as', guest.name, 'layer%d' % step, '--disk-only', '--no-metadata',
                 '--atomic', '--diskspec', 'vda,file=%s' % layer)
        write_markers(guest, step)
    args = {'domain': guest.name, 'state': 'consolidated', 'max_chain_length': 1, 'method': 'commit'}
    thread, runner, hold = start_held(tmp_path, inv, hv1, 'nova.snapshots.nova_chain', args,
                                      crash.ACTIVE_COMMIT_READY)
    # the commit's block job is ready and waits for its pivot: the daemon goes away and comes back
    restart_libvirtd(hv1, guest)
    os.unlink(hold)
    thread.join(300)
    res = result_of(fleetbed.Job(runner), hv1)
    # it lost its connection at the pivot: a clear message saying so, not a traceback
    assert res['failed'] and 'Traceback' not in repr(res) and 'module_stderr' not in res, res
    assert res['msg'].startswith("lost the connection to libvirtd while pivoting onto "), res['msg']
    assert guest.state == 'running'
    assert_markers(guest, 3, last=4)

    # the next run converges: one image, every marker, the guest ran on
    done = run(tmp_path, inv, hv1, 'nova.snapshots.nova_chain', args)
    assert not done.get('failed'), done
    assert done['disks']['vda']['length'] == 1, done['disks']
    again = run(tmp_path, inv, hv1, 'nova.snapshots.nova_chain', args)
    assert again['changed'] is False
    assert guest.state == 'running'
    assert_markers(guest, 3, last=4)
    write_markers(guest, 4)
    guest.stop()
    guest.start()
    assert_markers(guest, 4, last=5)


def test_libvirtd_restarted_while_a_revert_has_stopped_the_vm(tmp_path, hosts, inventory, make_fleet_guest):
    hv1 = hosts[0]
    inv = inventory(hosts=[hv1])
    guest = make_fleet_guest(hv1, running=True)
    write_markers(guest, 1)
    snap = {'domain': guest.name, 'name': 'one', 'snapshot_type': 'disk_only'}
    assert not run(tmp_path, inv, hv1, 'nova.snapshots.nova_snapshot', snap).get('failed')
    write_markers(guest, 2)
    revert = dict(snap, state='reverted', after='running')
    thread, runner, hold = start_held(tmp_path, inv, hv1, 'nova.snapshots.nova_snapshot', revert, crash.VM_STOPPED)
    restart_libvirtd(hv1, guest)
    os.unlink(hold)
    thread.join(300)
    res = result_of(fleetbed.Job(runner), hv1)
    # the new definition could not be written: the task says why, and put the VM back as it was
    # (a new connection once libvirtd was back), so the VM still exists and runs its old disks
    assert res['failed'] and 'Traceback' not in repr(res) and 'module_stderr' not in res, res
    assert res['msg'].startswith("reverting to snapshot 'one' failed: lost the connection to libvirtd while "), res['msg']
    assert 'failed too' not in res['msg'] and 'put back on the disks it ran on' in res['msg'], res['msg']
    guest.refresh()
    assert guest.state == 'running'
    guest.wait_ready()
    assert_markers(guest, 2, last=3)
    done = run(tmp_path, inv, hv1, 'nova.snapshots.nova_snapshot', revert)
    assert not done.get('failed'), done
    guest.refresh()
    assert guest.state == 'running'
    guest.wait_ready()                  # disk_only: the guest booted from the snapshot's disks
    assert_markers(guest, 1, last=3)
    assert run(tmp_path, inv, hv1, 'nova.snapshots.nova_snapshot', revert)['changed'] is False
