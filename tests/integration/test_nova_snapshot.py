# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova_snapshot through ansible-playbook on the real test guest: create, revert, delete.

Every revert is proven by the guest's disks (markers) and, for snapshots with RAM, its counter.
"""

from __future__ import annotations

import os
import stat

import pytest

from testbed import assert_markers, assert_ram_restored, run_task, ticks_around, write_markers

MODULE = 'nova.snapshots.nova_snapshot'


def snap(guest, name, **args):
    args.setdefault('storage_dir', guest.storage_dir)
    result = run_task(MODULE, dict(domain=guest.name, name=name, **args))
    assert not result.get('failed'), result.get('msg')
    return result


def libvirt_names(guest):
    return sorted(s.getName() for s in guest.dom.listAllSnapshots())


@pytest.mark.parametrize('snapshot_type', ['internal', 'external', 'memory', 'disk_only'])
def test_live_snapshot_and_revert(make_guest, snapshot_type):
    guest = make_guest(disks=2)
    write_markers(guest, 1)
    guest.wait_tick(3)

    first, window = ticks_around(guest, lambda: snap(guest, 'cp', snapshot_type=snapshot_type, description='checkpoint'))
    at = window[1]
    assert first['changed'] is True
    assert guest.state == 'running'                     # live: the guest kept running
    guest.wait_tick(at + 1)
    record = first['snapshot']
    assert record['snapshot_type'] == snapshot_type and record['name'] == 'cp'
    assert sorted(d['device'] for d in record['disk_files']) == ['vda', 'vdb']
    assert (record['memory_file'] is not None) == (snapshot_type in ('external', 'memory'))
    assert libvirt_names(guest) == ['cp']

    again = snap(guest, 'cp', snapshot_type=snapshot_type, description='checkpoint')
    assert again['changed'] is False and again['snapshot']['id'] == record['id']

    write_markers(guest, 2)
    assert_markers(guest, 2)
    offset = len(guest.console())
    after = 'running' if snapshot_type == 'disk_only' else 'snapshot'
    reverted = snap(guest, 'cp', state='reverted', after=after)
    assert reverted['changed'] is True
    assert guest.state == 'running'
    if snapshot_type == 'disk_only':
        guest.wait_ready()                                # no RAM: the guest booted from the snapshot's disks
    else:
        assert_ram_restored(guest, offset, window)
    assert_markers(guest, 1)

    # the same revert again is not a change, and changes nothing
    write_markers(guest, 3)
    assert snap(guest, 'cp', state='reverted', after=after)['changed'] is False
    assert guest.read_marker('vda', 3 * 4096) == 'step3-vda'


@pytest.mark.parametrize('snapshot_type', ['internal', 'external', 'disk_only'])
def test_shut_off_snapshot_and_revert(make_guest, snapshot_type):
    guest = make_guest(disks=2)
    write_markers(guest, 1)
    guest.stop()
    record = snap(guest, 'off', snapshot_type=snapshot_type)['snapshot']
    assert record['vm_state'] == 'shutoff' and record['memory_file'] is None
    guest.start()
    write_markers(guest, 2)
    guest.stop()

    result = snap(guest, 'off', state='reverted')
    assert result['changed'] is True and guest.state == 'shutoff'
    guest.start()
    assert_markers(guest, 1)


def test_memory_snapshot_of_shut_off_vm_is_refused(make_guest):
    guest = make_guest(running=False)
    result = run_task(MODULE, dict(domain=guest.name, name='m', snapshot_type='memory', storage_dir=guest.storage_dir))
    assert result['failed'] is True
    assert result['msg'] == "a memory snapshot needs a running or paused VM; domain '%s' is shutoff" % guest.name
    assert libvirt_names(guest) == []


def test_memory_file_and_directories_are_private(make_guest):
    guest = make_guest(disks=1)
    record = snap(guest, 'ram', snapshot_type='memory')['snapshot']
    assert stat.S_IMODE(os.stat(record['memory_file']).st_mode) == 0o600
    directory = os.path.dirname(record['memory_file'])
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(guest.storage_dir, guest.name)).st_mode) == 0o700
