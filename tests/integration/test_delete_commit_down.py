# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deleting an inner snapshot of a shut-off VM whose layer is much larger than the one above it: the
small layer is committed down into the large one (not the large one copied up), and every remaining
snapshot and the VM's disk still show exactly their bytes (read on the host with qemu-io)."""

from __future__ import annotations

import glob
import os
import subprocess

from testbed import guest_task, image_bytes

MiB = 1024 * 1024


def write(path, pattern, offset, length):
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P %d %d %d' % (pattern, offset, length), path],
                   check=True, capture_output=True)


def top(guest):
    return guest.dom.XMLDesc(0).split("<source file='")[1].split("'")[0]


def frozen(guest):
    """{snapshot: the image it froze}, from nova_snapshot_info."""
    info = guest_task('nova.snapshots.nova_snapshot_info', guest, ok=True)
    return dict((s['name'], s['disk_files'][0]['file_path']) for s in info['snapshots'])


def shows(path):
    """(byte at 0, at 12 MiB, at 20 MiB, at 21 MiB): the large layer, its end, the small layer, the VM's own."""
    return tuple(image_bytes(path, off, 1) for off in (0, 12 * MiB, 20 * MiB, 21 * MiB))


def test_offline_delete_commits_the_small_layer_down(make_guest):
    guest = make_guest(disks=1, running=False)
    guest_task('nova.snapshots.nova_snapshot', guest, ok=True, name='s1', snapshot_type='disk_only')
    write(top(guest), 0x11, 0, 16 * MiB)            # the large layer (frozen by s2)
    guest_task('nova.snapshots.nova_snapshot', guest, ok=True, name='s2', snapshot_type='disk_only')
    write(top(guest), 0x22, 20 * MiB, 65536)        # the small layer (frozen by s3)
    guest_task('nova.snapshots.nova_snapshot', guest, ok=True, name='s3', snapshot_type='disk_only')
    write(top(guest), 0x33, 21 * MiB, 65536)        # the VM's own writes since s3
    before = frozen(guest)
    large, small = before['s2'], before['s3']
    large_size = os.path.getsize(large)
    want_s3, want_vm = shows(small), shows(top(guest))
    assert want_s3 == (b'\x11', b'\x11', b'\x22', b'\x00') and want_vm == (b'\x11', b'\x11', b'\x22', b'\x33')

    result = guest_task('nova.snapshots.nova_snapshot', guest, ok=True, name='s2', state='absent')
    assert result['changed'] is True
    # s3 now lives in the large layer's file, which took the small one in; the small file is gone
    after = frozen(guest)
    assert sorted(after) == ['s1', 's3'] and after['s3'] == large and not os.path.exists(small)
    assert os.path.getsize(large) < large_size + 2 * MiB, 'the large layer was rewritten, not added to'
    assert shows(large) == want_s3 and shows(top(guest)) == want_vm
    assert image_bytes(after['s1'], 0, 1) == b'\x00'
    images = sorted(glob.glob(os.path.join(guest.storage_dir, guest.name, '*', '*', '*.qcow2')))
    assert images == sorted([large, top(guest)]), images
