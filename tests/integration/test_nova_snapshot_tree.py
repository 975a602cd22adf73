# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova_snapshot_tree on the test guest: the seed's web-server tree, switching, deleting in it."""

from __future__ import annotations

import os

import pytest

from testbed import assert_ram_restored, run_task

TREE = 'nova.snapshots.nova_snapshot_tree'
SNAP = 'nova.snapshots.nova_snapshot'

# The seed's tree, and the marker each snapshot's step writes before it is taken.
SEED = [  # (snapshot, parent, step)
    ('base-install', None, 1),
    ('security-updates', 'base-install', 2),
    ('app-v1.0', 'security-updates', 3),
    ('app-v1.1', 'app-v1.0', 4),
    ('testing-branch', 'app-v1.0', 5),
    ('experimental-feature', 'testing-branch', 6),
    ('minimal-config', 'base-install', 7),
    ('production-ready', 'minimal-config', 8),
]
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
    args.setdefault('storage_dir', guest.storage_dir)
    result = run_task(module, dict(domain=guest.name, **args))
    assert not result.get('failed'), result.get('msg')
    return result


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

    guest.stop()
    for snap, _parent, _k in SEED:
        assert visit(guest, snap) == (history(snap), history(snap)), snap

    # deleting inner snapshots of the branched tree keeps every other node byte for byte
    for victim in ('app-v1.0', 'base-install'):
        task(TREE, guest, state='switched', name='production-ready')
        task(SNAP, guest, name=victim, state='absent')
        for snap, _parent, _k in SEED:
            if snap in ('app-v1.0', 'base-install'):
                continue
            assert visit(guest, snap) == (history(snap), history(snap)), (victim, snap)


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
    left_at = guest.wait_tick(guest.tick() + 1)
    switched = task(TREE, guest, state='switched', name='feature')
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


@pytest.mark.parametrize('point', ['switch-planned', 'switch-left', 'switch-up'])
def test_a_switch_killed_part_way_is_finished_by_the_next_run(make_guest, point):
    guest = make_guest(disks=1)
    guest.write_marker('vda', 4096, 'common')
    task(SNAP, guest, name='start', snapshot_type='disk_only')
    task(TREE, guest, state='branched', name='other', **{'from': 'start'})
    guest.write_marker('vda', 8192, 'main-work')
    left_at = guest.wait_tick(guest.tick() + 1)

    killed = run_task(TREE, dict(domain=guest.name, storage_dir=guest.storage_dir, state='switched', name='other'),
                      environment={'NOVA_SNAPSHOTS_CRASH_AT': point})
    assert killed.get('failed') or killed.get('unreachable'), killed
    if point == 'switch-planned':
        # killed before anything happened: main still runs, and its RAM is saved by the re-run
        assert guest.state == 'running'
        left_at = guest.tick()

    done = task(TREE, guest, state='switched', name='other')
    assert [b['name'] for b in done['branches'] if b['active']] == ['other']
    guest.start()
    assert guest.read_marker('vda', 4096) == 'common' and guest.read_marker('vda', 8192) == ''
    offset = len(guest.console())
    task(TREE, guest, state='switched', name='main')
    assert_ram_restored(guest, offset, left_at)
    assert guest.read_marker('vda', 8192) == 'main-work'
