# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Merges proven the way a user sees them: boot the target after the merge and read every block the
guest wrote on either side, whatever state the VM and the branches were left in."""

from __future__ import annotations

import pytest

from testbed import WEB_SERVER_TREE, guest_task, run_task

TREE = 'nova.snapshots.nova_snapshot_tree'
SNAP = 'nova.snapshots.nova_snapshot'

# The seed's web-server tree (testbed.WEB_SERVER_TREE); here each step's marker goes in its own 64 KiB
# qcow2 cluster (a block-level merge works in clusters, so markers sharing one would be conflicts).
SEED = WEB_SERVER_TREE
STEPS = range(1, 12)       # 1-8 the seed's steps; 9-11 written after the tips (uncommitted)


def task(module, guest, **args):
    return guest_task(module, guest, ok=True, **args)


def offset(k):
    return k << 20


def write(guest, k):
    for dev in sorted(guest.disks):
        guest.write_marker(dev, offset(k), 'step%d-%s' % (k, dev))


def seen(guest):
    """The steps whose markers the booted VM shows, per disk."""
    if guest.state != 'running':
        guest.start()
    return dict((dev, set(k for k in STEPS if guest.read_marker(dev, offset(k), 12) == 'step%d-%s' % (k, dev)))
                for dev in sorted(guest.disks))


def build_seed_tree(guest):
    last = None
    for snap, parent, k in SEED:
        if parent is not None and parent != last:
            task(TREE, guest, state='branched', name='line-' + snap, switch=True, **{'from': parent})
        if guest.state != 'running':
            guest.start()
        write(guest, k)
        task(SNAP, guest, name=snap, snapshot_type='disk_only')
        last = snap


def both(steps, guest):
    return dict((dev, set(steps)) for dev in sorted(guest.disks))


def test_merge_into_the_active_branch_after_a_power_cut(make_guest):
    """The issue's sequence: switch, run, the VM destroyed, merge into the active branch."""
    guest = make_guest(disks=2)
    build_seed_tree(guest)                        # active: line-minimal-config at production-ready
    task(TREE, guest, state='switched', name='line-testing-branch')
    assert seen(guest) == both({1, 2, 3, 5, 6}, guest)
    write(guest, 9)                               # the source's own writes after its tip (not merged)
    task(TREE, guest, state='switched', name='line-minimal-config')
    assert seen(guest) == both({1, 7, 8}, guest)
    write(guest, 10)                              # the target's own writes after its tip
    guest.stop()                                  # a power cut
    merged = task(TREE, guest, state='merged', source='line-testing-branch', target='line-minimal-config')
    assert merged['changed'] is True and merged['conflicts'] == []
    assert seen(guest) == both({1, 2, 3, 5, 6, 7, 8, 10}, guest)


# -- every state the target branch can be left in --------------------------------------------------
BASE, M1, MU, F1, FU = (k << 20 for k in (1, 2, 3, 4, 5))
WORDS = dict(((BASE, 'base'), (M1, 'main-1'), (MU, 'main-uncommitted'), (F1, 'feat-1'), (FU, 'feat-uncommitted')))


def shown(guest):
    if guest.state != 'running':
        guest.start()
    return dict((off, guest.read_marker('vda', off) == word) for off, word in sorted(WORDS.items()))


def expect(*present):
    return dict((off, off in present) for off in sorted(WORDS))


@pytest.mark.parametrize('state', ['active-destroyed', 'active-off', 'inactive-saved', 'inactive-off'])
def test_merge_is_seen_by_the_booted_target_in_every_state(make_guest, state):
    guest = make_guest(disks=1)
    guest.write_marker('vda', BASE, 'base')
    task(SNAP, guest, name='root', snapshot_type='disk_only')
    task(TREE, guest, state='branched', name='feature', **{'from': 'root'})
    guest.write_marker('vda', M1, 'main-1')
    task(SNAP, guest, name='m1', snapshot_type='disk_only')
    guest.write_marker('vda', MU, 'main-uncommitted')          # main's own writes after its tip
    if state in ('active-off', 'inactive-off'):
        guest.stop()                                            # main is left shut off
    task(TREE, guest, state='switched', name='feature')        # running: main's RAM is saved
    assert shown(guest) == expect(BASE)
    guest.write_marker('vda', F1, 'feat-1')
    task(SNAP, guest, name='f1', snapshot_type='disk_only')
    guest.write_marker('vda', FU, 'feat-uncommitted')          # not in the source's tip: not merged

    if state == 'active-destroyed':
        task(TREE, guest, state='switched', name='main')
        assert shown(guest) == expect(BASE, M1, MU)
        guest.stop()                                            # a power cut
    elif state == 'active-off':
        guest.stop()
        task(TREE, guest, state='switched', name='main')        # main comes back shut off, as it was left
        assert guest.state == 'shutoff'
    merged = task(TREE, guest, state='merged', source='feature', target='main')
    assert merged['changed'] is True and merged['conflicts'] == []
    assert task(TREE, guest, state='merged', source='feature', target='main')['changed'] is False

    if state.startswith('inactive'):
        task(TREE, guest, state='switched', name='main')
        assert guest.state == ('running' if state == 'inactive-saved' else 'shutoff')
    assert shown(guest) == expect(BASE, M1, MU, F1)
    guest.stop()
    # the merge result itself holds both sides' snapshots and none of the uncommitted writes
    task(TREE, guest, state='switched', name='merge-feature-into-main')
    assert shown(guest) == expect(BASE, M1, F1)
    guest.stop()
    # and the source is as it was
    task(TREE, guest, state='switched', name='feature')
    assert shown(guest) == expect(BASE, F1, FU)


def test_uncommitted_writes_sharing_a_cluster_with_the_source_are_a_conflict(make_guest):
    """The cause of issue 10's lost blocks: a target write of a few bytes after its tip holds its
    whole 64 KiB cluster in the overlay, which hid the source's block there after the rebase."""
    guest = make_guest(disks=1)
    guest.write_marker('vda', BASE, 'base')
    task(SNAP, guest, name='root', snapshot_type='disk_only')
    task(TREE, guest, state='branched', name='feature', **{'from': 'root'})
    guest.write_marker('vda', M1, 'main-1')
    task(SNAP, guest, name='m1', snapshot_type='disk_only')
    guest.write_marker('vda', MU, 'main-uncommitted')
    guest.write_marker('vda', F1 + 4096, 'main-shared')         # same cluster as the source's block at F1
    task(TREE, guest, state='switched', name='feature')
    guest.start()                                               # feature starts shut off, on root
    guest.write_marker('vda', F1, 'feat-1')
    task(SNAP, guest, name='f1', snapshot_type='disk_only')
    task(TREE, guest, state='switched', name='main')
    guest.stop()                                                # a power cut

    def main_shows():
        found = shown(guest)
        found['shared'] = guest.read_marker('vda', F1 + 4096) == 'main-shared'
        guest.stop()
        return found

    refused = run_task(TREE, dict(domain=guest.name, storage_dir=guest.storage_dir, state='merged',
                                  source='feature', target='main'))
    assert refused['failed'] is True
    assert refused['msg'] == ("vda: bytes %d-%d changed on both sides (writes of branch 'main' since its tip "
                              "snapshot 'm1', not yet in a snapshot)" % (F1, F1 + 65535))
    assert main_shows() == dict(expect(BASE, M1, MU), shared=True)            # nothing changed
    assert 'merge-feature-into-main' not in [s.getName() for s in guest.dom.listAllSnapshots()]

    merged = task(TREE, guest, state='merged', source='feature', target='main', conflict='source')
    assert merged['conflicts'] == ['vda: bytes %d-%d changed on both sides' % (F1, F1 + 65535)]
    assert main_shows() == dict(expect(BASE, M1, MU, F1), shared=False)       # the source's cluster, as asked
    task(TREE, guest, state='switched', name='merge-feature-into-main')
    assert main_shows() == dict(expect(BASE, M1, F1), shared=False)
