# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova_storage on real guests: analysis and cleanup of a small full filesystem (a tmpfs store),
and force-unlocking a lock whose holder was killed (kill -9) or is alive.

The guests stay shut off (no boot): their disks are written with qemu-io between snapshots, so every
layer holds a known pattern, and the tests read the bytes each snapshot's image shows afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import libvirt
import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.model import _crash as crash
from testbed import guest_task, held_task, image_bytes

STORAGE = 'nova.snapshots.nova_storage'
SNAP = 'nova.snapshots.nova_snapshot'
MIB = 2 ** 20
POLICY_TAGS = ['nova-policy:nightly', 'nova-period:daily']


def ok(result):
    assert not result.get('failed'), result.get('msg')
    return result


def top(guest, dev='vda'):
    from lxml import etree
    root = etree.fromstring(guest.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    return root.xpath("devices/disk[target/@dev=$dev]/source/@file", dev=dev)[0]


def fill(guest, step):
    """Pattern `step` over the first 4 MiB of vda (the same range each time: a newer layer covers an older one)."""
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P %d 0 4M' % step, top(guest)], check=True, capture_output=True)


def snapshot(guest, name, tags=None, category=None):
    ok(guest_task(SNAP, guest, name=name, snapshot_type='disk_only', tags=tags, category=category))


@pytest.fixture
def small_store(make_guest):
    """A shut-off guest whose store is a 40 MiB tmpfs, with this history (pattern k written before snapshot k):
    p1, p2, p3 by a policy; m1 by hand; prot by the policy but protected."""
    guest = make_guest(disks=1, running=False)
    os.makedirs(guest.storage_dir)
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=40m,mode=0755', 'tmpfs', guest.storage_dir], check=True)
    try:
        history = [('p1', POLICY_TAGS + ['nova-at:2026-01-01T02:00:00Z'], 'policy'),
                   ('p2', POLICY_TAGS + ['nova-at:2026-01-02T02:00:00Z'], 'policy'),
                   ('p3', POLICY_TAGS + ['nova-at:2026-01-03T02:00:00Z'], 'policy'),
                   ('m1', None, None),
                   ('prot', POLICY_TAGS + ['nova-at:2026-01-05T02:00:00Z', 'protected'], 'policy')]
        for step, (name, tags, category) in enumerate(history, 1):
            fill(guest, step)
            snapshot(guest, name, tags, category)
        fill(guest, 6)
        yield guest
    finally:
        subprocess.run(['umount', '-l', guest.storage_dir], check=False)


def frozen_images(run_module, guest):
    """{snapshot: the image holding its state of vda}, read in-process (a read-only module)."""
    info = ok(run_module('nova.snapshots.nova_snapshot_info', domain=guest.name, storage_dir=guest.storage_dir))
    return dict((s['name'], s['disk_files'][0]['file_path']) for s in info['snapshots'])


def free(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_analyze_then_clean_a_full_small_filesystem(small_store, run_module):
    guest = small_store
    images = frozen_images(run_module, guest)

    report = ok(run_module(STORAGE, domain=guest.name, storage_dir=guest.storage_dir, state='analyzed'))
    assert report['changed'] is False
    [dom] = report['domains']
    snaps = dict((s['name'], s) for s in dom['snapshots'])
    assert snaps['p1']['exclusive_bytes'] == 0 and 'not created by the collection' in snaps['p1']['kept_because'][0]
    for name in ('p2', 'p3', 'm1', 'prot'):     # each layer is covered by the one above: deleting frees it whole
        assert 3.9 * MIB < snaps[name]['exclusive_bytes'] < 5 * MIB, (name, snaps[name])
        assert snaps[name]['shared_bytes'] == snaps[name]['bytes_on_disk'] - snaps[name]['exclusive_bytes']
    assert snaps['p2']['policy_made'] and not snaps['m1']['policy_made'] and snaps['prot']['protected']
    actions = dict((r['action'], r) for r in report['recommendations'])
    assert actions['consolidate']['saves'] > 10 * MIB      # six 4 MiB layers over one 4 MiB disk
    assert actions['compress']['saves'] >= 0

    # fill the filesystem: about 3 MiB left
    filler = os.path.join(guest.storage_dir, 'filler')
    subprocess.run(['fallocate', '-l', str(free(guest.storage_dir) - 3 * MIB), filler], check=True)
    before = free(guest.storage_dir)
    want = before + 7 * MIB

    bad = guest_task(STORAGE, guest, state='cleaned', free_space='seven megs')
    assert bad['failed'] and "free_space must be a size such as '10GB'" in bad['msg']

    too_much = guest_task(STORAGE, guest, state='cleaned', free_space='%d' % (before + 100 * MIB))
    assert too_much['failed'] and 'nothing was deleted' in too_much['msg']
    held = dict((h['snapshot'], h['reason']) for h in too_much['held'])
    assert 'made by hand' in held['m1'] and 'protected' in held['prot'] and 'frees nothing' in held['p1']
    assert 'made by hand' in too_much['msg']

    planned = ok(guest_task(STORAGE, guest, check=True, diff=True, state='cleaned', free_space=str(want)))
    assert planned['changed'] is True and [p['name'] for p in planned['planned']] == ['p2', 'p3']
    assert planned['diff']['before']['delete'] == {guest.name: ['p2', 'p3']}
    assert all(os.path.exists(p) for p in images.values())                # check mode deleted nothing

    done = ok(guest_task(STORAGE, guest, state='cleaned', free_space=str(want)))
    assert done['changed'] and [d['name'] for d in done['deleted']] == ['p2', 'p3'] and done['target_met']
    assert free(guest.storage_dir) >= want
    assert not os.path.exists(images['p2']) and not os.path.exists(images['p3'])
    assert sorted(frozen_images(run_module, guest)) == ['m1', 'p1', 'prot']
    assert sorted(guest.dom.snapshotListNames()) == ['m1', 'p1', 'prot']
    # every remaining snapshot still shows its own bytes, and the VM its latest
    for name, step in (('p1', 1), ('m1', 4), ('prot', 5)):
        assert image_bytes(images[name], 0, 4096) == bytes([step]) * 4096, name
    assert image_bytes(top(guest), 0, 4096) == bytes([6]) * 4096

    again = ok(guest_task(STORAGE, guest, state='cleaned', free_space=str(want)))
    assert again['changed'] is False and again['deleted'] == []


def test_force_unlock_killed_and_live_holder(make_guest, tmp_path, run_module):
    guest = make_guest(disks=1, running=False)
    fill(guest, 1)
    snapshot(guest, 's1')
    fill(guest, 2)
    snapshot(guest, 's2')
    fill(guest, 3)

    args = dict(domain=guest.name, storage_dir=guest.storage_dir)
    assert ok(run_module(STORAGE, state='unlocked', **args))['changed'] is False     # nothing held
    bad = run_module(STORAGE, state='unlocked', storage_dir=guest.storage_dir)
    assert bad['failed'] and 'state is unlocked but all of the following are missing: domain' in bad['msg']

    # a live holder: a delete held mid-operation (its layer merged, libvirt not told yet)
    hold = str(tmp_path / 'hold')
    task = held_task(SNAP, dict(args, name='s2', state='absent'), crash.DELETE_MERGED, hold)
    pid = int(open(hold).read())
    refused = run_module(STORAGE, state='unlocked', **args)
    assert refused['failed'] and 'pid %d' % pid in refused['msg'] and 'is alive' in refused['msg']
    assert "delete snapshot s2 of %s" % guest.name in refused['msg']
    assert refused['holder']['pid'] == pid

    # killed: the kernel drops its flock, the record naming it stays until cleared
    os.kill(pid, signal.SIGKILL)
    assert task.result().get('failed')
    deadline = time.time() + 10
    while os.path.exists('/proc/%d' % pid) and time.time() < deadline:
        time.sleep(0.1)
    os.unlink(hold)
    checked = ok(guest_task(STORAGE, guest, check=True, state='unlocked'))        # check mode, through a playbook
    assert checked['changed'] and checked['lock']['state'] == 'stale' and checked['lock']['holder']['pid'] == pid
    cleared = ok(run_module(STORAGE, state='unlocked', **args))
    assert cleared['changed'] and cleared['lock']['holder']['pid'] == pid
    assert 'no longer exists' in cleared['lock']['reason']
    assert open(os.path.join(guest.storage_dir, guest.name, '.lock')).read() == ''
    assert ok(run_module(STORAGE, state='unlocked', **args))['changed'] is False

    # the interrupted delete is finished by the next run: s2 gone everywhere, every state kept
    s1_image = frozen_images(run_module, guest)['s1']
    ok(guest_task(SNAP, guest, name='s2', state='absent'))
    assert guest.dom.snapshotListNames() == ['s1']
    assert list(frozen_images(run_module, guest)) == ['s1']
    assert image_bytes(s1_image, 0, 4096) == bytes([1]) * 4096
    assert image_bytes(top(guest), 0, 4096) == bytes([3]) * 4096


def test_diagnosed_chain_length_settings_and_fragmentation(make_guest, run_module):
    guest = make_guest(disks=1, running=False)
    guest.redefine(lambda root: root.find('devices/disk/driver').set('cache', 'writethrough'))
    for step in (1, 2):
        fill(guest, step)
        snapshot(guest, 's%d' % step)
    args = dict(domain=guest.name, storage_dir=guest.storage_dir)
    bad = run_module('nova.snapshots.nova_chain', state='diagnosed', disks=['vdz'], **args)
    assert bad['failed'] and "has no disk vdz" in bad['msg']
    result = ok(run_module('nova.snapshots.nova_chain', state='diagnosed', max_chain_length=2, **args))
    assert result['changed'] is False
    vda = result['diagnosis']['vda']
    assert vda['chain_length'] == 3 and vda['base_image'] == guest.disks['vda'] and vda['block_job'] is None
    assert vda['settings']['cache'] == 'writethrough' and vda['settings']['bus'] == 'virtio'
    # reads come from s2's layer only (it covers the 4 MiB the base holds too; the VM's image is empty)
    assert vda['layers_read'] == 1 and vda['bytes_read_per_depth'] == {'1': 4 * MIB}
    assert [img['allocated_clusters'] for img in vda['images']] == [0, 64, 64]      # 64 KiB clusters
    for img in vda['images']:
        assert img['fragmentation_percent'] is not None and 0 <= img['fragmented_clusters'] <= 64, img
        assert img['storage']['directory'] in (os.path.join(guest.storage_dir, guest.name), guest.dir)
    found = [p['problem'] for p in result['problems']]
    assert any(p.startswith('Snapshot chain length exceeds recommended limit: 3 images') for p in found), found
    assert any("cache='writethrough'" in p for p in found) and any('discard is not unmap' in p for p in found)
    fixes = [p['fix'] for p in result['problems'] if 'chain length' in p['problem']]
    assert 'nova_chain state=consolidated' in fixes[0]
