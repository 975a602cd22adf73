# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova_snapshot_tree on the test guest: the seed's web-server tree, switching, deleting in it."""

from __future__ import annotations

import os

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.model import _crash as crash
from testbed import WEB_SERVER_TREE, assert_ram_restored, guest_task, image_bytes, run_task, ticks_around

TREE = 'nova.snapshots.nova_snapshot_tree'
SNAP = 'nova.snapshots.nova_snapshot'

# The seed's tree (testbed.WEB_SERVER_TREE), and the marker each snapshot's step writes before it is taken.
SEED = WEB_SERVER_TREE
SEED_TEXT = """VM: {vm}
│
├─ base-install (root)
│  ├─ security-updates
│  │  └─ app-v1.0
│  │     ├─ app-v1.1
│  │     └─ testing-branch
│  │        └─ experimental-feature
│  └─ minimal-config
│     └─ production-ready"""


def task(module, guest, **args):
    return guest_task(module, guest, ok=True, **args)


def history(name):
    """The steps whose markers a snapshot must hold: those on its path to the root."""
    parents = dict((s, p) for s, p, _k in SEED)
    steps = dict((s, k) for s, _p, k in SEED)
    out = set()
    while name:
        out.add(steps[name])
        name = parents[name]
    return out


def markers(guest, dev='vda'):
    return set(k for k in range(1, 9) if guest.read_marker(dev, k * 4096, 12) == 'step%d-%s' % (k, dev))


def write_step(guest, k):
    for dev in sorted(guest.disks):
        guest.write_marker(dev, k * 4096, 'step%d-%s' % (k, dev))


def visit(guest, name):
    """Switch to snapshot `name` (a branch of that name starts there), boot, read the markers."""
    task(TREE, guest, state='switched', name=name)
    if guest.state != 'running':
        guest.start()
    found = markers(guest), markers(guest, 'vdb')
    guest.stop()
    return found


def stored_markers(guest):
    """{snapshot: (steps on vda, steps on vdb)} read on the host from each snapshot's images."""
    out = {}
    for snap in task('nova.snapshots.nova_snapshot_info', guest)['snapshots']:
        found = {}
        for disk in snap['disk_files']:
            data = image_bytes(disk['file_path'], 0, 9 * 4096)
            dev = disk['device']
            found[dev] = set(k for k in range(1, 9)
                             if data[k * 4096:k * 4096 + 12].rstrip(b'\0') == ('step%d-%s' % (k, dev)).encode())
        out[snap['name']] = (found['vda'], found['vdb'])
    return out


def build_seed_tree(guest):
    """Build the seed's tree: a step's marker is written on the line of its snapshot, then taken."""
    last = None
    for snap, parent, k in SEED:
        if parent is not None and parent != last:
            # a new line of work at the parent, like `git checkout -b line-<snap> <parent>`
            task(TREE, guest, state='branched', name='line-' + snap, switch=True, **{'from': parent})
        if guest.state != 'running':
            guest.start()
        write_step(guest, k)
        task(SNAP, guest, name=snap, snapshot_type='disk_only')
        last = snap


def test_seed_tree_every_node_holds_exactly_its_history(make_guest):
    guest = make_guest(disks=2)
    build_seed_tree(guest)
    shown = task(TREE, guest, state='switched', name='line-minimal-config')   # already active
    assert shown['changed'] is False
    text = shown['tree_text']
    plain = '\n'.join(line.split(' *')[0].split(' [')[0] for line in text.splitlines())
    assert plain == SEED_TEXT.format(vm=guest.name)
    assert shown['current'] == 'production-ready'
    assert 'digraph' in shown['tree_dot'] and '"production-ready"' in shown['tree_dot']
    assert [n['name'] for n in shown['tree']] == ['base-install']
    assert [c['name'] for c in shown['tree'][0]['children']] == ['security-updates', 'minimal-config']
    heads = dict((b['name'], b['head']) for b in shown['branches'])
    assert heads == {'main': 'app-v1.1', 'line-testing-branch': 'experimental-feature',
                     'line-minimal-config': 'production-ready'}

    q = task('nova.snapshots.nova_snapshot_info', guest, path_to_root='experimental-feature', descendants='app-v1.0',
             common_ancestor=['app-v1.1', 'experimental-feature'])
    assert q['path_to_root'] == ['experimental-feature', 'testing-branch', 'app-v1.0', 'security-updates', 'base-install']
    assert sorted(q['descendants']) == ['app-v1.1', 'experimental-feature', 'testing-branch']
    assert q['common_ancestor'] == 'app-v1.0'
    assert q['tree_text'] == text

    guest.stop()
    for snap, _parent, _k in SEED:
        assert visit(guest, snap) == (history(snap), history(snap)), snap

    # deleting inner snapshots of the branched tree keeps every other node byte for byte: after each
    # delete, every node's images read on the host as a revert to it shows them (the guest proved
    # above that a visit shows exactly those), and a node whose chain the deletes rewrote is booted
    deleted = []
    for victim in ('app-v1.0', 'base-install'):
        task(TREE, guest, state='switched', name='production-ready')
        task(SNAP, guest, name=victim, state='absent')
        deleted.append(victim)
        stored = stored_markers(guest)
        assert sorted(stored) == sorted(snap for snap, _parent, _k in SEED if snap not in deleted)
        for snap, found in stored.items():
            assert found == (history(snap), history(snap)), (victim, snap, found)
    assert visit(guest, 'experimental-feature') == (history('experimental-feature'),) * 2


def test_switching_keeps_the_branch_left_behind_ram_and_disks(make_guest):
    guest = make_guest(disks=1)
    guest.write_marker('vda', 4096, 'common')
    task(SNAP, guest, name='start', snapshot_type='disk_only')
    made = task(TREE, guest, state='branched', name='feature', **{'from': 'start'})
    assert made['changed'] is True
    assert {b['name']: b['active'] for b in made['branches']} == {'main': True, 'feature': False}
    again = task(TREE, guest, state='branched', name='feature', **{'from': 'start'})
    assert again['changed'] is False

    guest.write_marker('vda', 8192, 'on-main')
    guest.wait_tick(guest.tick() + 1)
    switched, left_at = ticks_around(guest, lambda: task(TREE, guest, state='switched', name='feature'))
    assert switched['changed'] is True
    assert [b['saved_ram'] for b in switched['branches'] if b['name'] == 'main'] == [True]
    assert guest.state == 'shutoff'            # a disk-only base: the new branch starts shut off
    guest.start()
    assert guest.read_marker('vda', 4096) == 'common' and guest.read_marker('vda', 8192) == ''
    guest.write_marker('vda', 8192, 'on-feature')

    offset = len(guest.console())
    back = task(TREE, guest, state='switched', name='main')
    assert back['changed'] is True and guest.state == 'running'
    assert_ram_restored(guest, offset, left_at)          # main resumes where it was left
    assert guest.read_marker('vda', 8192) == 'on-main'
    assert task(TREE, guest, state='switched', name='main')['changed'] is False

    task(TREE, guest, state='switched', name='feature')   # feature was left running too: it resumes
    assert guest.state == 'running'
    guest.note_restored()
    assert guest.read_marker('vda', 8192) == 'on-feature'

    refused = run_task(TREE, dict(domain=guest.name, storage_dir=guest.storage_dir, state='absent', name='feature'))
    assert refused['failed'] and refused['msg'] == ("branch 'feature' is the active branch of domain '%s'; "
                                                    "switch to another branch first" % guest.name)
    task(TREE, guest, state='switched', name='main')
    memory = os.path.join(guest.storage_dir, guest.name, 'branches', 'feature', 'memory.save')
    assert os.path.exists(memory)                         # feature was running when left
    gone = task(TREE, guest, state='absent', name='feature')
    assert gone['changed'] is True and not os.path.exists(memory)
    assert [b['name'] for b in gone['branches']] == ['main']


def test_branches_refuse_internal_histories(make_guest):
    guest = make_guest(disks=1, running=False)
    task(SNAP, guest, name='int', snapshot_type='internal')
    result = run_task(TREE, dict(domain=guest.name, storage_dir=guest.storage_dir, state='branched',
                                 name='b', **{'from': 'int'}))
    assert result['failed'] and 'branches need external, memory or disk_only snapshots' in result['msg']


@pytest.mark.parametrize('point', [crash.SWITCH_PLANNED, crash.SWITCH_LEFT, crash.SWITCH_UP])
def test_a_switch_killed_part_way_is_finished_by_the_next_run(make_guest, point):
    guest = make_guest(disks=1)
    guest.write_marker('vda', 4096, 'common')
    task(SNAP, guest, name='start', snapshot_type='disk_only')
    task(TREE, guest, state='branched', name='other', **{'from': 'start'})
    guest.write_marker('vda', 8192, 'main-work')
    guest.wait_tick(guest.tick() + 1)

    killed, left_at = ticks_around(guest, lambda: run_task(
        TREE, dict(domain=guest.name, storage_dir=guest.storage_dir, state='switched', name='other'),
        environment={crash.ENV: point}))
    assert killed.get('failed') or killed.get('unreachable'), killed
    if point == 'switch-planned':
        # killed before anything happened: main still runs, and its RAM is saved by the re-run
        assert guest.state == 'running'
        done, left_at = ticks_around(guest, lambda: task(TREE, guest, state='switched', name='other'))
    else:
        done = task(TREE, guest, state='switched', name='other')
    assert [b['name'] for b in done['branches'] if b['active']] == ['other']
    guest.start()
    assert guest.read_marker('vda', 4096) == 'common' and guest.read_marker('vda', 8192) == ''
    offset = len(guest.console())
    task(TREE, guest, state='switched', name='main')
    assert_ram_restored(guest, offset, left_at)
    assert guest.read_marker('vda', 8192) == 'main-work'


# Markers of the merge tests, each in its own 64 KiB qcow2 cluster: a block-level merge works in clusters.
B, M, F, U = 1 << 20, 2 << 20, 3 << 20, 4 << 20


def boot_and_read(guest, offsets=None):
    if guest.state != 'running':
        guest.start()
    return [guest.read_marker('vda', off) for off in offsets or (B, M, F)]


def test_merge_three_way_conflicts_and_fast_forward(make_guest):
    guest = make_guest(disks=1)
    guest.write_marker('vda', B, 'base')
    task(SNAP, guest, name='root', snapshot_type='disk_only')
    task(TREE, guest, state='branched', name='feature', **{'from': 'root'})
    guest.write_marker('vda', M, 'main-1')
    task(SNAP, guest, name='m1', snapshot_type='disk_only')
    guest.write_marker('vda', U, 'main-uncommitted')          # main's own writes since m1

    task(TREE, guest, state='switched', name='feature')
    assert boot_and_read(guest) == ['base', '', '']
    guest.write_marker('vda', F, 'feat-1')
    task(SNAP, guest, name='f1', snapshot_type='disk_only')
    guest.stop()

    # three-way: main moved (m1) and feature moved (f1); different blocks, no conflict
    merged = task(TREE, guest, state='merged', source='feature', target='main')
    assert merged['changed'] is True and merged['conflicts'] == []
    assert [b['head'] for b in merged['branches'] if b['name'] == 'main'] == ['merge-feature-into-main']
    assert 'style=dashed' in merged['tree_dot']
    again = task(TREE, guest, state='merged', source='feature', target='main')
    assert again['changed'] is False                                 # feature is already in main

    task(TREE, guest, state='switched', name='main')
    assert boot_and_read(guest, (B, M, F, U)) == ['base', 'main-1', 'feat-1', 'main-uncommitted']
    guest.stop()

    # a real conflict: both sides change block 8192 differently
    task(TREE, guest, state='switched', name='feature')
    boot_and_read(guest)
    guest.write_marker('vda', M, 'feat-2')
    task(SNAP, guest, name='f2', snapshot_type='disk_only')
    guest.stop()
    refused = run_task(TREE, dict(domain=guest.name, storage_dir=guest.storage_dir, state='merged',
                                  source='feature', target='main', result_name='m-conflict'))
    assert refused['failed'] is True
    assert refused['msg'] == 'vda: bytes %d-%d changed on both sides' % (M, M + 65535)
    theirs = task(TREE, guest, state='merged', source='feature', target='main', conflict='source', result_name='m-src')
    assert theirs['conflicts'] == ['vda: bytes %d-%d changed on both sides' % (M, M + 65535)]
    task(TREE, guest, state='switched', name='m-src')                # a branch at the merge result
    assert boot_and_read(guest) == ['base', 'feat-2', 'feat-1']
    guest.stop()

    # fast-forward: a branch still at root takes main's head as it is
    task(TREE, guest, state='branched', name='behind', **{'from': 'root'})
    ff = task(TREE, guest, state='merged', source='main', target='behind')
    assert ff['actions'] == ['fast-forward behind from root to m-src']
    task(TREE, guest, state='switched', name='behind')
    assert boot_and_read(guest) == ['base', 'feat-2', 'feat-1']


def test_merge_and_delete_killed_part_way_are_finished_by_the_next_run(make_guest):
    guest = make_guest(disks=1)
    guest.write_marker('vda', B, 'base')
    task(SNAP, guest, name='root', snapshot_type='disk_only')
    task(TREE, guest, state='branched', name='side', switch=True, **{'from': 'root'})
    boot_and_read(guest)
    guest.write_marker('vda', F, 'side-1')
    task(SNAP, guest, name='s1', snapshot_type='disk_only')
    task(TREE, guest, state='switched', name='main')
    guest.write_marker('vda', M, 'main-1')
    task(SNAP, guest, name='m1', snapshot_type='disk_only')
    guest.write_marker('vda', U, 'main-2')
    task(SNAP, guest, name='m2', snapshot_type='disk_only')
    guest.stop()

    for point in (crash.MERGE_WRITTEN, crash.MERGE_RECORDED):
        killed = run_task(TREE, dict(domain=guest.name, storage_dir=guest.storage_dir, state='merged', source='side',
                                     target='main', result_name='joined'), environment={crash.ENV: point})
        assert killed.get('failed'), killed
    finished = task(TREE, guest, state='merged', source='side', target='main', result_name='joined')
    assert [s.getName() for s in guest.dom.listAllSnapshots() if s.getName() == 'joined'] == ['joined']
    assert finished['changed'] is False       # the killed run had recorded the merge; libvirt was told on re-load
    assert [b['head'] for b in finished['branches'] if b['name'] == 'main'] == ['joined']

    # delete an inner snapshot, killed after its layer was merged, then finished
    killed = run_task(SNAP, dict(domain=guest.name, storage_dir=guest.storage_dir, name='m1', state='absent'),
                      environment={crash.ENV: crash.DELETE_MERGED})
    assert killed.get('failed'), killed
    assert task(SNAP, guest, name='m1', state='absent')['changed'] is True
    assert 'm1' not in [s.getName() for s in guest.dom.listAllSnapshots()]
    for name, expected in (('m2', ['base', 'main-1', '', 'main-2']), ('joined', ['base', 'main-1', 'side-1', 'main-2']),
                           ('s1', ['base', '', 'side-1', ''])):
        task(TREE, guest, state='switched', name=name)
        assert boot_and_read(guest, (B, M, F, U)) == expected, name
        guest.stop()
