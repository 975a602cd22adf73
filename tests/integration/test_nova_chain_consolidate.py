# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova_chain consolidated / optimized / storage tiers on real chains of the test guest.

Every test proves the data: the guest's markers on the VM's disks after the change, and after
reverting to every snapshot that must have survived it.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.model import _crash as crash
from testbed import assert_markers, guest_task, run_task, write_markers

CHAIN = 'nova.snapshots.nova_chain'
SNAP = 'nova.snapshots.nova_snapshot'


def task(module, guest, check=False, **args):
    return guest_task(module, guest, check=check, **args)


def ok(result):
    assert not result.get('failed'), result.get('msg')
    return result


def chain_files(path):
    out = subprocess.run(['qemu-img', 'info', '-U', '--backing-chain', '--output=json', path],
                         check=True, capture_output=True, text=True).stdout
    import json
    return [i['filename'] for i in json.loads(out)]


def anonymous_layer(guest, name):
    """A disk-only layer made the way users make them by hand: virsh, no snapshot metadata."""
    path = os.path.join(guest.dir, name + '.qcow2')
    subprocess.run(['virsh', '-q', '-c', 'qemu:///system', 'snapshot-create-as', guest.name, name, '--disk-only',
                    '--no-metadata', '--atomic', '--diskspec', 'vda,file=%s' % path], check=True, capture_output=True)
    return path


def revert_and_check(guest, name, upto, last):
    ok(task(SNAP, guest, name=name, state='reverted', after='running'))
    guest.wait_ready()
    assert_markers(guest, upto, last=last)


@pytest.mark.parametrize('method', ['pull', 'commit'])
def test_anonymous_layers_are_merged_live(make_guest, method):
    guest = make_guest(disks=1)
    write_markers(guest, 1)
    for step in (2, 3, 4):
        anonymous_layer(guest, 'layer%d' % step)
        write_markers(guest, step)
    info = ok(task(CHAIN, guest))
    assert info['disks']['vda']['length'] == 4
    top = info['disks']['vda']['chain'][0]['file']

    planned = ok(task(CHAIN, guest, check=True, state='consolidated', max_chain_length=2, method=method))
    assert planned['changed'] is True and len(planned['merged']) == 1
    assert ok(task(CHAIN, guest))['disks']['vda']['length'] == 4          # check mode changed nothing

    # killed (kill -9) in the middle: the guest runs on with every marker, and a re-run finishes
    point = crash.ACTIVE_COMMIT_READY if method == 'commit' else crash.CONSOLIDATE_MERGED
    killed = run_task(CHAIN, dict(domain=guest.name, storage_dir=guest.storage_dir, state='consolidated',
                                  max_chain_length=2, method=method), environment={crash.ENV: point})
    assert killed.get('failed'), killed
    assert guest.state == 'running'
    assert_markers(guest, 4, last=5)

    tick = guest.tick()
    done = ok(task(CHAIN, guest, state='consolidated', max_chain_length=2, method=method))
    assert done['disks']['vda']['length'] == 1
    if method == 'commit':     # the killed run left the commit waiting for its pivot: redone from the start
        assert done['changed'] is True
        merged = done['merged'][0]
        assert merged['method'] == method and len(merged['layers']) == 3
    else:                      # the killed run's pull had finished; the re-run only tidies up
        merged = dict(into=top)
    if method == 'pull':
        assert merged['into'] == top and done['disks']['vda']['chain'][0]['file'] == top
    else:   # the base took the top's place, in libvirt's live and persistent definitions
        assert merged['into'] == guest.disks['vda'] and merged['replaces'] == top
        assert done['disks']['vda']['chain'][0]['file'] == guest.disks['vda']
        assert guest.disks['vda'] in guest.dom.XMLDesc(2)       # VIR_DOMAIN_XML_INACTIVE
    assert guest.state == 'running' and guest.wait_tick(tick + 2)    # the guest ran on through it
    assert_markers(guest, 4, last=5)
    write_markers(guest, 5)                                            # and writes to the new chain
    assert_markers(guest, 5, last=5)
    # files the collection did not create are never deleted, only listed
    assert all(os.path.exists(f) for f in done['left_behind'])

    again = ok(task(CHAIN, guest, state='consolidated', max_chain_length=2, method=method))
    assert again['changed'] is False and again['merged'] == []
    guest.stop()
    guest.start()
    assert_markers(guest, 5, last=5)


def test_restore_points_survive_consolidation(make_guest):
    """A chain made only of snapshots: the VM's image pulls in the newest layers; every snapshot stays."""
    guest = make_guest(disks=2)
    for step in range(1, 6):
        write_markers(guest, step)
        ok(task(SNAP, guest, name='s%d' % step, snapshot_type='disk_only'))
    assert ok(task(CHAIN, guest))['disks']['vdb']['length'] == 6

    done = ok(task(CHAIN, guest, state='consolidated', max_chain_length=3))
    assert done['changed'] is True
    for dev in ('vda', 'vdb'):
        vm_chain = done['disks'][dev]['chain']
        assert len(vm_chain) == 3
        assert [c['snapshot'] for c in vm_chain] == [None, 's2', 's1']
    assert done['space_saved'] <= 0           # data was copied to keep the restore points
    assert_markers(guest, 5, last=6)
    assert ok(task(CHAIN, guest, state='consolidated', max_chain_length=3))['changed'] is False
    assert ok(task(CHAIN, guest, state='validated', max_chain_length=3))['problems'] == []

    for step in (5, 1, 3):
        revert_and_check(guest, 's%d' % step, step, last=6)


def test_offline_commit_repoints_snapshots(make_guest):
    """Shut off: an anonymous layer under a restore point is committed; the snapshot follows the data."""
    guest = make_guest(disks=1)
    write_markers(guest, 1)
    anonymous_layer(guest, 'hand-made')
    write_markers(guest, 2)
    ok(task(SNAP, guest, name='after-2', snapshot_type='disk_only'))    # freezes the hand-made layer
    write_markers(guest, 3)
    guest.stop()
    before = ok(task(CHAIN, guest))['disks']['vda']
    assert [c['snapshot'] for c in before['chain']] == [None, 'after-2', None]

    done = ok(task(CHAIN, guest, state='consolidated', max_chain_length=2, method='commit'))
    assert [m['method'] for m in done['merged']] == ['commit']
    assert done['disks']['vda']['length'] == 2
    assert [c['snapshot'] for c in done['disks']['vda']['chain']] == [None, 'after-2']
    guest.start()
    assert_markers(guest, 3, last=4)
    revert_and_check(guest, 'after-2', 2, last=4)


def test_optimized_compresses_frozen_layers(make_guest):
    guest = make_guest(disks=1)
    write_markers(guest, 1)
    ok(task(SNAP, guest, name='o1', snapshot_type='disk_only'))
    guest.stop()
    top = ok(task(CHAIN, guest))['disks']['vda']['chain'][0]['file']
    # compressible data and zeros in the layer o2 will freeze
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x41 8M 8M', '-c', 'write -P 0 16M 4M', top],
                   check=True, capture_output=True)
    guest.start()
    write_markers(guest, 2)
    ok(task(SNAP, guest, name='o2', snapshot_type='disk_only'))
    write_markers(guest, 3)

    running = ok(task(CHAIN, guest, state='optimized', compression='zstd'))
    assert running['changed'] is False
    assert top in [s['file'] for s in running['skipped'] if 'running VM' in s['reason']]

    guest.stop()
    planned = ok(task(CHAIN, guest, check=True, state='optimized', compression='zstd'))
    assert planned['changed'] is True and os.stat(top).st_blocks * 512 > 8 * 2 ** 20
    size_before = os.stat(top).st_blocks * 512
    done = ok(task(CHAIN, guest, state='optimized', compression='zstd'))
    assert done['changed'] is True and done['space_saved'] > 8 * 2 ** 20
    assert [o['file'] for o in done['optimized']] == [top]
    assert size_before - os.stat(top).st_blocks * 512 == done['space_saved']
    out = subprocess.run(['qemu-img', 'info', '-U', top], check=True, capture_output=True, text=True).stdout
    assert 'compression type: zstd' in out
    assert ok(task(CHAIN, guest, state='optimized', compression='zstd'))['changed'] is False

    guest.start()
    assert_markers(guest, 3, last=4)
    assert guest.read('vda', 8 * 2 ** 20 + 12345, 4) == b'AAAA'
    revert_and_check(guest, 'o2', 2, last=4)
    assert guest.read('vda', 8 * 2 ** 20 + 12345, 4) == b'AAAA'
    revert_and_check(guest, 'o1', 1, last=4)
    assert guest.read('vda', 8 * 2 ** 20 + 12345, 4) == b'\0\0\0\0'


def test_storage_tiers(make_guest):
    guest = make_guest(disks=1)
    archive = os.path.join(guest.dir, 'hdd')
    fast = os.path.join(guest.dir, 'ssd')
    os.makedirs(archive)
    os.makedirs(fast)
    write_markers(guest, 1)
    ok(task(SNAP, guest, name='t1', snapshot_type='disk_only'))
    write_markers(guest, 2)
    ok(task(SNAP, guest, name='t2', snapshot_type='disk_only'))
    write_markers(guest, 3)
    revert_and_check(guest, 't1', 1, last=4)     # t2's layer is no longer read by the VM

    moved = ok(task(CHAIN, guest, state='consolidated', archive_storage=archive))
    assert moved['changed'] is True and len(moved['moved']) == 1
    dest = moved['moved'][0]['to']
    assert dest.startswith(os.path.join(archive, guest.name) + '/') and os.path.exists(dest)
    assert not os.path.exists(moved['moved'][0]['file'])
    assert ok(task(CHAIN, guest, state='consolidated', archive_storage=archive))['changed'] is False

    revert_and_check(guest, 't2', 2, last=4)     # restored from the archive tier
    vm_chain = [c['file'] for c in ok(task(CHAIN, guest))['disks']['vda']['chain']]
    assert dest in vm_chain
    running = ok(task(CHAIN, guest, state='consolidated', active_storage=fast))
    assert running['changed'] is False and [n['file'] for n in running['not_moved']] == [dest]
    guest.stop()
    back = ok(task(CHAIN, guest, state='consolidated', active_storage=fast))
    assert [m['file'] for m in back['moved']] == [dest]
    assert back['moved'][0]['to'].startswith(os.path.join(fast, guest.name) + '/')
    guest.start()
    assert_markers(guest, 2, last=4)
    revert_and_check(guest, 't1', 1, last=4)
    assert ok(task(CHAIN, guest, state='validated'))['problems'] == []


def test_full_filesystem_leaves_the_chain_as_it_was(make_guest):
    guest = make_guest(disks=1)
    small = os.path.join(guest.dir, 'small')
    os.makedirs(small)
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', small], check=True)
    try:
        os.chmod(small, 0o777)
        guest.stop()
        subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x42 1M 24M', guest.disks['vda']],
                       check=True, capture_output=True)
        guest.start()
        write_markers(guest, 1)
        layer = os.path.join(small, 'top.qcow2')
        subprocess.run(['virsh', '-q', '-c', 'qemu:///system', 'snapshot-create-as', guest.name, 'x', '--disk-only',
                        '--no-metadata', '--atomic', '--diskspec', 'vda,file=%s' % layer], check=True, capture_output=True)
        write_markers(guest, 2)
        with open(os.path.join(small, 'filler'), 'wb') as f:
            f.write(b'\1' * (40 * 2 ** 20))
        before = chain_files(layer)

        full = task(CHAIN, guest, state='consolidated', max_chain_length=1, method='pull')
        assert full['failed'] is True and 'not enough free space in %s' % small in full['msg']
        assert 'nothing was changed' in full['msg']
        assert chain_files(layer) == before
        assert_markers(guest, 2, last=3)
        assert guest.read('vda', 20 * 2 ** 20, 2) == b'BB'
    finally:
        guest.stop()
        subprocess.run(['umount', small], check=False)


def test_threshold_consolidates_a_short_but_wasteful_chain(make_guest):
    """Three images, each holding its own copy of the same 8 MiB: short, but three times the space."""
    guest = make_guest(disks=1, running=False)
    for name in ('', 'copy1', 'copy2'):
        top = anonymous_layer(guest, name) if name else guest.disks['vda']
        subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x%x 1M 8M' % (0x61 + len(name)), top],
                       check=True, capture_output=True)
    before = ok(task(CHAIN, guest))['disks']['vda']
    assert before['length'] == 3 and before['overhead_percent'] > 150

    tolerant = ok(task(CHAIN, guest, state='consolidated', consolidate_threshold=400))
    assert tolerant['changed'] is False and tolerant['merged'] == []

    done = ok(task(CHAIN, guest, state='consolidated'))            # default threshold 80 %, length 10
    assert done['changed'] is True and done['disks']['vda']['length'] == 1
    assert done['disks']['vda']['overhead_percent'] < 10
    # the merged-away images are the user's own files: left in place and listed, never deleted
    assert sorted(done['left_behind']) == sorted([guest.disks['vda'], os.path.join(guest.dir, 'copy1.qcow2')]) \
        or sorted(done['left_behind']) == [os.path.join(guest.dir, 'copy2.qcow2')]
    guest.start()
    assert guest.read('vda', 2 * 2 ** 20, 4) == b'ffff'           # the newest copy, 0x61 + len('copy2')
