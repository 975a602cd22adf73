# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import time

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ansible_collections.nova.snapshots.plugins.module_utils.model._records import Branch, SnapshotDisk, VmSnapshot
from ansible_collections.nova.snapshots.plugins.module_utils.model._tree import InvalidParent, Tree, render_dot, render_text


def snap(sid, parent=None, t=0, name=None, merge_parents=None):
    return VmSnapshot(sid, 'vm', name or sid, 'disk_only', t, 'running',
                      [SnapshotDisk('vda', '/s/%s.qcow2' % sid)], parent_snapshot=parent, merge_parents=merge_parents)


def ids(snaps):
    return [s.id for s in snaps]


# -- what the engine relies on ------------------------------------------------------------------
def test_remove_reparents_children_and_moves_current():
    tree = Tree('vm', [snap('a', t=1), snap('b', 'a', 2), snap('c', 'b', 3), snap('d', 'b', 4)], current='b')
    tree.remove('b')
    assert ids(tree.children('a')) == ['c', 'd']
    assert tree.current == 'a'
    tree.remove('a')
    assert tree.snapshots['c'].parent_snapshot is None and tree.current is None
    assert ids(tree.roots()) == ['c', 'd'] and tree.by_name('a') is None


def test_descendants_and_order_within_one_second():
    tree = Tree('vm', [snap('z', t=5), snap('y', 'z', 5), snap('x', 'y', 5)])
    assert ids(tree.ordered()) == ['z', 'y', 'x']
    assert ids(tree.descendants('z')) == ['y', 'x']


def test_descendants_go_depth_first_with_siblings_by_time_then_name():
    tree = Tree('vm', [snap('r', t=1), snap('b', 'r', 2), snap('a', 'r', 2), snap('c', 'r', 1), snap('a1', 'a', 9)])
    assert ids(tree.children('r')) == ['c', 'a', 'b']
    assert ids(tree.descendants('r')) == ['c', 'a', 'a1', 'b']


def test_round_trip_keeps_everything():
    tree = Tree('vm', [snap('a', t=1), snap('b', 'a', 2)], current='b', last_revert={'id': 'b', 'state': 'running'},
                deleting=['old'], branches=[Branch('main', base='a', head='b')], active_branch='main')
    tree.snapshots['a'].tags = ['x']
    again = Tree.from_dict(tree.to_dict())
    assert again.to_dict() == tree.to_dict()
    assert ids(again.children('a')) == ['b'] and again.by_name('b').id == 'b'


def test_describe_derives_children_current_and_sizes():
    tree = Tree('vm', [snap('a', t=1), snap('b', 'a', 2)], current='b')
    record = tree.describe(tree.snapshots['a'], {'/s/a.qcow2': 4096})
    assert record['children'] == ['b'] and record['is_current'] is False
    assert record['size_bytes'] == 4096 and record['disk_files'][0]['size_bytes'] == 4096
    assert tree.describe(tree.snapshots['b'])['parent_name'] == 'a'


def test_adding_an_id_again_replaces_the_record_in_every_index():
    tree = Tree('vm', [snap('a', t=1), snap('b', 'a', 2)])
    tree.add(snap('b', None, 2, name='renamed'), make_current=False)
    assert tree.children('a') == [] and ids(tree.roots()) == ['a', 'b']
    assert tree.by_name('b') is None and tree.by_name('renamed').id == 'b' and len(tree.snapshots) == 2


# -- queries --------------------------------------------------------------------------------------
def test_path_to_root_and_common_ancestor():
    tree = Tree('vm', [snap('r', t=1), snap('a', 'r', 2), snap('a1', 'a', 3), snap('b', 'r', 4), snap('other', t=5)])
    assert tree.path_to_root('a1') == ['a1', 'a', 'r'] and tree.depth('a1') == 2
    assert tree.common_ancestor('a1', 'b') == 'r'
    assert tree.common_ancestor('a1', 'a') == 'a' and tree.common_ancestor('a', 'a') == 'a'
    assert tree.common_ancestor('a1', 'other') is None
    with pytest.raises(KeyError):
        tree.path_to_root('missing')


def test_a_parent_deleted_outside_the_collection_leaves_a_root():
    tree = Tree('vm', [snap('a', 'gone', 1), snap('b', 'a', 2)])
    assert ids(tree.roots()) == ['a'] and tree.path_to_root('b') == ['b', 'a']


def test_hand_edited_metadata_with_a_loop_or_a_twice_used_name_hangs_nothing():
    tree = Tree('vm', [snap('a', 'b', 1), snap('b', 'a', 2), snap('c', t=3, name='dup'), snap('d', t=4, name='dup')])
    assert tree.path_to_root('a') == ['a', 'b'] and ids(tree.descendants('a')) == ['b']
    assert ids(tree.ordered()) == ['a', 'b', 'c', 'd'] and len(render_text(tree).splitlines()) == 4
    assert tree.by_name('dup').id == 'c'
    tree.remove('c')
    assert tree.by_name('dup').id == 'd'


def test_reparent_moves_a_subtree_and_refuses_loops_and_strangers():
    tree = Tree('vm', [snap('r', t=1), snap('a', 'r', 2), snap('a1', 'a', 3), snap('b', 'r', 4)])
    tree.reparent('a', 'b')
    assert tree.path_to_root('a1') == ['a1', 'a', 'b', 'r'] and ids(tree.children('r')) == ['b']
    for bad in ('a', 'a1', 'missing'):
        with pytest.raises(InvalidParent):
            tree.reparent('a', bad)
    assert tree.snapshots['a'].parent_snapshot == 'b'
    tree.reparent('a', None)
    assert ids(tree.roots()) == ['r', 'a']


def test_queries_stay_fast_and_flat_on_a_chain_of_10000():
    n = 10000
    tree = Tree('vm', [snap('s%05d' % i, 's%05d' % (i - 1) if i else None, i) for i in range(n)])
    deepest = 's%05d' % (n - 1)
    for query in (lambda: tree.path_to_root(deepest), lambda: tree.descendants('s00000'),
                  lambda: tree.common_ancestor(deepest, 's05000'), tree.roots, tree.ordered):
        start = time.process_time()
        query()
        # Generous for slow CI; anything quadratic in the chain length takes seconds.
        assert time.process_time() - start < 0.5
    assert len(tree.path_to_root(deepest)) == n and len(tree.descendants('s00000')) == n - 1
    assert len(render_text(Tree.from_dict(tree.to_dict())).splitlines()) == n + 2


# -- drawings -------------------------------------------------------------------------------------
SEED_DRAWING = '''\
VM: web-server
│
├─ base-install (root)
│  ├─ security-updates
│  │  └─ app-v1.0
│  │     ├─ app-v1.1
│  │     └─ testing-branch
│  │        └─ experimental-feature
│  └─ minimal-config
│     └─ production-ready'''


def seed_tree():
    made = [('base-install', None), ('security-updates', 'base-install'), ('minimal-config', 'base-install'),
            ('app-v1.0', 'security-updates'), ('testing-branch', 'app-v1.0'), ('app-v1.1', 'app-v1.0'),
            ('experimental-feature', 'testing-branch'), ('production-ready', 'minimal-config')]
    # testing-branch is added before app-v1.1 and in the same second: the name puts it second.
    times = dict(zip([n for n, _p in made], [1, 2, 3, 4, 6, 6, 7, 8]))
    return Tree('web-server', [snap('id-' + n, 'id-' + p if p else None, times[n], n) for n, p in made])


def test_render_text_draws_the_seed_tree_exactly():
    assert render_text(seed_tree()) == SEED_DRAWING


def test_render_text_marks_current_and_branch_tips_and_ends_the_last_root():
    tree = Tree('vm', [snap('r1', t=1), snap('a', 'r1', 3), snap('r2', t=2), snap('b', 'r2', 4)], current='a',
                branches=[Branch('main', base='r2', head='b'), Branch('dev', base='a'), Branch('new')])
    assert render_text(tree) == '\n'.join([
        'VM: vm',
        '│',
        '├─ r1 (root)',
        '│  └─ a * [dev]',
        '└─ r2 (root)',
        '   └─ b [main]',
    ])
    tree.current = 'r1'
    assert render_text(tree).splitlines()[2] == '├─ r1 (root) *'


def test_render_text_of_an_empty_tree_is_the_header():
    assert render_text(Tree('vm')) == 'VM: vm\n│'


def test_render_dot_escapes_and_shows_merges_current_and_branches():
    tree = Tree('vm', [snap('a', t=1, name='say "hi" \\'), snap('b', 'a', 2), snap('c', 'a', 3),
                       snap('m', 'b', 4, merge_parents=['c', 'gone'])], current='m',
                branches=[Branch('main', base='a', head='m'), Branch('dead', head='gone')])
    assert render_dot(tree) == '\n'.join([
        'digraph "vm" {',
        '  "a" [label="say \\"hi\\" \\\\"];',
        '  "b" [label="b"];',
        '  "c" [label="c"];',
        '  "m" [label="m", style="bold,filled"];',
        '  "a" -> "b";',
        '  "a" -> "c";',
        '  "b" -> "m";',
        '  "c" -> "m" [style=dashed];',
        '  "branch:dead" [shape=box, label="dead"];',
        '  "branch:main" [shape=box, label="main"];',
        '  "branch:main" -> "m";',
        '}',
    ])


# -- properties: random operations against a plain dict id -> parent id ----------------------------
class Reference(object):
    """The tree the slow, obvious way: no indexes, every answer recomputed from the parent links."""

    def __init__(self):
        self.parent, self.time, self.name = {}, {}, {}

    def children(self, snap_id):
        return sorted((c for c, p in self.parent.items() if p == snap_id),
                      key=lambda c: (self.time[c], self.name[c], c))

    def path(self, snap_id):
        out = [snap_id]
        while self.parent[out[-1]] is not None:
            out.append(self.parent[out[-1]])
        return out

    def below(self, snap_id):
        return set(x for x in self.parent if x != snap_id and snap_id in self.path(x))

    def preorder(self, snap_id=None):
        out = []
        for child in self.children(snap_id):
            out += [child] + self.preorder(child)
        return out

    def common_ancestor(self, a, b):
        on_b = self.path(b)
        return next((x for x in self.path(a) if x in on_b), None)


def assert_same(tree, ref, current):
    everything = ref.preorder()
    assert sorted(tree.snapshots) == sorted(ref.parent) and tree.current == current
    assert ids(tree.roots()) == ref.children(None)
    for snap_id in ref.parent:
        assert tree.snapshots[snap_id].parent_snapshot == ref.parent[snap_id]
        assert ids(tree.children(snap_id)) == ref.children(snap_id)
        assert tree.by_name(ref.name[snap_id]).id == snap_id
        path = tree.path_to_root(snap_id)
        assert path == ref.path(snap_id) and tree.snapshots[path[-1]].parent_snapshot is None
        # In a whole-tree preorder a snapshot's descendants are the block right after it.
        start = everything.index(snap_id) + 1
        assert ids(tree.descendants(snap_id)) == everything[start:start + len(ref.below(snap_id))]


class TreeMachine(RuleBasedStateMachine):
    def __init__(self):
        super(TreeMachine, self).__init__()
        self.tree, self.ref, self.current, self.made = Tree('vm'), Reference(), None, 0

    def draw_id(self, data, label, or_none=False):
        return data.draw(st.sampled_from(([None] if or_none else []) + sorted(self.ref.parent)), label=label)

    # Few distinct times, so siblings often share a second and the name has to order them.
    @rule(data=st.data(), t=st.integers(0, 3), letter=st.sampled_from('xyz'), make_current=st.booleans())
    def add(self, data, t, letter, make_current):
        parent = self.draw_id(data, 'parent', or_none=True)
        self.made += 1
        sid, name = 'id%04d' % self.made, '%s-%04d' % (letter, self.made)
        self.tree.add(snap(sid, parent, t, name), make_current)
        self.ref.parent[sid], self.ref.time[sid], self.ref.name[sid] = parent, t, name
        self.current = sid if make_current else self.current

    @precondition(lambda self: self.ref.parent)
    @rule(data=st.data())
    def remove(self, data):
        victim = self.draw_id(data, 'victim')
        parent, kids, before = self.ref.parent.pop(victim), self.ref.children(victim), set(self.tree.snapshots)
        assert self.tree.remove(victim).id == victim
        assert set(self.tree.snapshots) == before - set([victim])
        assert [self.tree.snapshots[k].parent_snapshot for k in kids] == [parent] * len(kids)
        assert self.tree.by_name(self.ref.name[victim]) is None
        for kid in kids:
            self.ref.parent[kid] = parent
        self.current = parent if self.current == victim else self.current

    @precondition(lambda self: self.ref.parent)
    @rule(data=st.data())
    def reparent(self, data):
        moved, onto = self.draw_id(data, 'moved'), self.draw_id(data, 'onto', or_none=True)
        if onto == moved or onto in self.ref.below(moved):
            with pytest.raises(InvalidParent):
                self.tree.reparent(moved, onto)
        else:
            self.tree.reparent(moved, onto)
            self.ref.parent[moved] = onto

    @precondition(lambda self: self.ref.parent)
    @rule(data=st.data())
    def common_ancestor_is_on_both_paths_and_nearest(self, data):
        one, other = self.draw_id(data, 'one'), self.draw_id(data, 'other')
        found = self.tree.common_ancestor(one, other)
        assert found == self.ref.common_ancestor(one, other) == self.tree.common_ancestor(other, one)
        path_one, path_other = self.tree.path_to_root(one), self.tree.path_to_root(other)
        if found is None:
            assert path_one[-1] != path_other[-1]
        else:
            nearer = path_one[:path_one.index(found)]
            assert found in path_other and not set(nearer) & set(path_other)

    @invariant()
    def indexes_agree_with_the_reference(self):
        assert_same(self.tree, self.ref, self.current)

    @invariant()
    def survives_a_round_trip(self):
        again = Tree.from_dict(self.tree.to_dict())
        assert again.to_dict() == self.tree.to_dict()
        assert_same(again, self.ref, self.current)

    @invariant()
    def draws_every_snapshot_once_in_preorder(self):
        text = render_text(self.tree)
        lines = text.splitlines()
        names = [self.ref.name[i] for i in self.ref.preorder()]
        assert len(lines) == len(self.ref.parent) + 2
        assert [line.lstrip('│├└─ ').split(' ')[0] for line in lines[2:]] == names
        assert all(text.count(name) == 1 for name in names)
        marked = [line.lstrip('│├└─ ').split(' ')[0] for line in lines[2:] if line.endswith(' *')]
        assert marked == ([self.ref.name[self.current]] if self.current else [])


TreeMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestTreeAgainstReference = TreeMachine.TestCase


def test_repoint_image_moves_every_reference():
    from ansible_collections.nova.snapshots.plugins.module_utils.model._records import Branch, SnapshotDisk, VmSnapshot
    frozen = VmSnapshot('a', 'vm', 'a', 'disk_only', 1, 'shutoff', [SnapshotDisk('vda', '/s/old', 'qcow2', '/base')])
    above = VmSnapshot('b', 'vm', 'b', 'disk_only', 2, 'shutoff', [SnapshotDisk('vda', '/s/up', 'qcow2', '/s/old')],
                       parent_snapshot='a')
    other = VmSnapshot('c', 'vm', 'c', 'disk_only', 3, 'shutoff', [SnapshotDisk('vdb', '/s/vdb', 'qcow2', None)])
    tree = Tree('vm', [frozen, above, other], current='b',
                branches=[Branch('dev', base='a', disks={'vda': '/s/old'}, activating={'vda': '/s/./old'})])
    moved = tree.repoint_image('/s/old', '/tier/old', key=lambda p: p.replace('/./', '/'))
    assert moved == 4
    assert frozen.disk('vda').file_path == '/tier/old' and frozen.disk('vda').backing_file == '/base'
    assert above.disk('vda').backing_file == '/tier/old' and above.disk('vda').file_path == '/s/up'
    assert tree.branches['dev'].disks == {'vda': '/tier/old'} and tree.branches['dev'].activating == {'vda': '/tier/old'}
    assert other.disk('vdb').file_path == '/s/vdb'
    # a commit: the image above takes the frozen one's place, and what lay below it is below the new one
    assert tree.repoint_image('/s/up', '/tier/old', new_backing='/base') == 1
    assert above.disk('vda').file_path == '/tier/old' and above.disk('vda').backing_file == '/base'
    assert tree.repoint_image('/nowhere', '/x') == 0
