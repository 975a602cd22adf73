# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deleting snapshots of a linear history, inner, leaf and root, VM running or shut off.

After each delete, the markers of the VM's own disks and of every remaining snapshot are
checked, so a lost layer cannot go unnoticed.
"""

from __future__ import annotations

import glob
import os

import pytest

from testbed import assert_markers, guest_task, write_markers

MODULE = 'nova.snapshots.nova_snapshot'


def task(guest, name, **args):
    return guest_task(MODULE, guest, ok=True, name=name, **args)


class Driver:
    """Runs the same story on a running or a shut-off VM (booting it only to read or write)."""

    def __init__(self, guest, running, snapshot_type):
        self.guest = guest
        self.running = running
        self.with_ram = running and snapshot_type != 'disk_only'

    def write(self, step):
        if not self.running:
            self.guest.start()
        write_markers(self.guest, step)
        if not self.running:
            self.guest.stop()

    def check(self, upto):
        if not self.running:
            self.guest.start()
        assert_markers(self.guest, upto)
        if not self.running:
            self.guest.stop()

    def revert(self, name, upto):
        if self.running:
            task(self.guest, name, state='reverted', after='running')
            if not self.with_ram:
                self.guest.wait_ready()      # booted from the snapshot's disks
        else:
            task(self.guest, name, state='reverted', after='shutoff')
        self.check(upto)


def libvirt_tree(guest):
    out = {}
    for s in guest.dom.listAllSnapshots():
        try:
            out[s.getName()] = s.getParent().getName()
        except Exception:   # pylint: disable=broad-except
            out[s.getName()] = None
    return out


@pytest.mark.parametrize('snapshot_type,running', [
    ('disk_only', True), ('memory', True), ('internal', True), ('disk_only', False), ('internal', False),
])
def test_delete_inner_leaf_and_root(make_guest, snapshot_type, running):
    guest = make_guest(disks=2)
    if not running:
        guest.stop()
    drive = Driver(guest, running, snapshot_type)
    for k in range(1, 5):
        drive.write(k)
        task(guest, 's%d' % k, snapshot_type=snapshot_type)
    drive.write(5)

    # inner: s2 (its layer is merged into s3's, which the running guest reads through)
    result = task(guest, 's2', state='absent')
    assert result['changed'] is True and result['snapshot']['name'] == 's2'
    assert libvirt_tree(guest) == {'s1': None, 's3': 's1', 's4': 's3'}
    drive.check(5)

    # leaf and current: s4 (its layer is pulled into the VM's active image)
    task(guest, 's4', state='absent')
    assert libvirt_tree(guest) == {'s1': None, 's3': 's1'}
    drive.check(5)

    # every remaining snapshot still holds exactly its history
    drive.revert('s3', 3)
    drive.revert('s1', 1)

    # a snapshot no longer on the VM's line, then the root, which is the current one
    task(guest, 's3', state='absent')
    drive.check(1)
    drive.write(6)
    task(guest, 's1', state='absent')
    if not running:
        guest.start()
    assert [guest.read_marker('vda', k * 4096, 12) for k in (1, 2, 6)] == ['step1-vda', '', 'step6-vda']
    assert libvirt_tree(guest) == {}

    # a second delete is not a change; the base images are never deleted
    assert task(guest, 's1', state='absent')['changed'] is False
    assert all(os.path.exists(p) for p in guest.disks.values())
    # nothing is left behind in the store but the VM's own overlays
    store = os.path.join(guest.storage_dir, guest.name)
    leftovers = glob.glob(os.path.join(store, 'snapshots', '*', '*'))
    assert leftovers == [], leftovers


def test_delete_with_children(make_guest):
    guest = make_guest(disks=1)
    for k in range(1, 4):
        write_markers(guest, k)
        task(guest, 's%d' % k, snapshot_type='disk_only')
    write_markers(guest, 4)
    result = task(guest, 's2', state='absent', children='delete')
    assert result['actions'] == ['delete snapshot s2 of %s' % guest.name, 'delete snapshot s3 of %s' % guest.name]
    assert libvirt_tree(guest) == {'s1': None}
    assert_markers(guest, 4)                 # the running VM keeps every layer it reads
    task(guest, 's1', state='reverted', after='running')
    guest.wait_ready()
    assert_markers(guest, 1)
