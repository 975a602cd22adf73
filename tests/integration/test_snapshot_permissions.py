# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Owner, group and mode of snapshot files on a running guest (nova_snapshot owner/group/mode).

The defaults are private from the start (directories 0700, files 0600, the directory owned by
libvirt's QEMU user); owner/group/mode apply to a new snapshot and change an existing one
idempotently with a diff; what would lock QEMU out of an image the running VM uses is refused.
The files are stat'ed, and the guest must keep running and writing through all of it.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat

import pytest

import testbed
from testbed import guest_task


SNAP = 'nova.snapshots.nova_snapshot'


def qemu_user():
    uid = pwd.getpwnam('libvirt-qemu').pw_uid
    return uid, pwd.getpwuid(uid).pw_gid


def stats(guest, name):
    """{file name ('.' for the directory): (owner, group, mode)} of snapshot `name`'s directory."""
    tree = json.load(open(os.path.join(guest.storage_dir, guest.name, 'metadata.json')))
    snap_id = [s['id'] for s in tree['snapshots'] if s['name'] == name][0]
    directory = os.path.join(guest.storage_dir, guest.name, 'snapshots', snap_id)
    out = {}
    for n in ['.'] + sorted(os.listdir(directory)):
        st = os.stat(os.path.join(directory, n))
        out[n] = (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, '%04o' % stat.S_IMODE(st.st_mode))
    return out


@pytest.fixture(scope='module')
def guest(conn):
    g = testbed.Guest(conn, disks=1, disk_mib=32)
    try:
        g.start()
        yield g
    finally:
        g.cleanup()


def task(guest, ok=True, **args):
    result = guest_task(SNAP, guest, log_file='', **args)
    if ok:
        assert not result.get('failed'), result.get('msg')
    return result


def defaults_are_private_from_the_start(guest):
    task(guest, name='p1', snapshot_type='external')        # with RAM: memory.save too
    got = stats(guest, 'p1')
    assert set(got) == {'.', 'disk_vda.qcow2', 'memory.save', 'metadata.json', 'snapshot.xml'}
    assert got['.'] == ('libvirt-qemu', 'libvirt-qemu', '0700')
    assert all(mode == '0600' for n, (_o, _g, mode) in got.items() if n != '.'), got


def a_new_snapshot_gets_the_owner_group_and_mode_asked(guest):
    r = task(guest, name='p2', snapshot_type='disk_only', group='kvm', mode='0640')
    assert r['changed'] and 'set permissions of snapshot p2 to group kvm mode 0640' in r['actions']
    got = stats(guest, 'p2')
    assert got['.'][1:] == ('kvm', '0750')
    assert all(g == 'kvm' and mode == '0640' for n, (_o, g, mode) in got.items() if n != '.'), got
    guest.write_marker('vda', 8192, 'after-p2')               # QEMU still writes to p2's overlay
    assert guest.read_marker('vda', 8192, 8) == 'after-p2'


def a_mode_that_locks_qemu_out_of_the_running_vms_overlay_is_refused(guest):
    before = stats(guest, 'p2')
    r = task(guest, ok=False, name='p2', owner='root', group='root', mode='0640')
    assert r['failed'] and "lock libvirt's QEMU user" in r['msg'] and 'read and write' in r['msg']
    assert 'nothing was changed' in r['msg']
    assert stats(guest, 'p2') == before
    r = task(guest, ok=False, name='p9', snapshot_type='disk_only', mode='0600', owner='root')
    assert r['failed'] and 'new snapshot' in r['msg']
    assert 'p9' not in [s.getName() for s in guest.dom.listAllSnapshots()]


def an_existing_snapshot_changes_idempotently_with_a_diff(guest):
    # p1's overlay is now a backing file the running VM reads: group kvm with read access is enough
    check = guest_task(SNAP, guest, check=True, diff=True, name='p1', owner='root', group='kvm', mode='0640')
    assert check['changed'] and check['diff']['after']['permissions'], check
    assert stats(guest, 'p1')['memory.save'][2] == '0600'
    perms = dict(domain=guest.name, storage_dir=guest.storage_dir, log_file='', name='p1', owner='root', group='kvm',
                 mode='0640')
    r, again, p3 = testbed.run_tasks(guest.dir, [
        (SNAP, dict(perms), False), (SNAP, dict(perms), False),
        # a later operation rewrites every snapshot's metadata.json: the owner and mode set stay
        (SNAP, dict(domain=guest.name, storage_dir=guest.storage_dir, log_file='', name='p3', snapshot_type='disk_only'),
         False)])
    assert r['changed'] and r['actions'][0].startswith('set permissions of snapshot p1')
    assert not again['changed'] and not p3.get('failed')
    # (the diff: the module returns it whether or not --diff is on)
    paths = r['diff']['after']['permissions']
    assert len(paths) == 5 and all(v == dict(owner='root', group='kvm', mode='0750' if os.path.isdir(k) else '0640')
                                   for k, v in paths.items())
    assert r['diff']['before']['permissions'] and r['diff']['before']['permissions'] != paths
    got = stats(guest, 'p1')
    assert got['.'] == ('root', 'kvm', '0750') and all(v == ('root', 'kvm', '0640') for n, v in got.items() if n != '.')
    audit = [json.loads(line) for line in open(os.path.join(guest.storage_dir, 'audit.log'))]
    assert [a['operation'] for a in audit if a['snapshots'] == ['p1']] == ['create', 'permissions']
    guest.write_marker('vda', 12288, 'still-ok')
    assert guest.read_marker('vda', 12288, 8) == 'still-ok'


def test_permissions_on_a_running_guest(guest):
    """The steps build on each other (one guest, its snapshots in order), so they run as one test:
    pytest-xdist may give separate tests of a module to separate workers."""
    defaults_are_private_from_the_start(guest)
    a_new_snapshot_gets_the_owner_group_and_mode_asked(guest)
    a_mode_that_locks_qemu_out_of_the_running_vms_overlay_is_refused(guest)
    an_existing_snapshot_changes_idempotently_with_a_diff(guest)
