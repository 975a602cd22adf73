# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from ansible_collections.nova.snapshots.plugins.module_utils._model import (
    InvalidName,
    SnapshotDisk,
    Tree,
    VmSnapshot,
    new_id,
    validate_name,
)


@pytest.mark.parametrize('name', ['base-install', 'web-server-before-update-20231025-001', 'a.b', 'ü' * 127, 'x' * 255])
def test_good_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize('name,fragment', [
    ('', 'non-empty'), ('a/b', "'/'"), ('.x', "starts with '.'"), ('a\0b', 'NUL'), ('<x>', 'XML'),
    ('a"b', 'XML'), ('ü' * 128, '255 bytes'), ('a\nb', 'control'),
])
def test_bad_names(name, fragment):
    with pytest.raises(InvalidName) as e:
        validate_name(name)
    assert fragment in e.value.msg


@given(st.text(max_size=300))
def test_accepted_names_are_safe_everywhere(name):
    try:
        validate_name(name)
    except InvalidName:
        return
    assert '/' not in name and not name.startswith('.') and '\0' not in name
    assert not set('<>&"\'') & set(name) and len(name.encode('utf-8')) <= 255


def snap(sid, parent=None, t=0, name=None):
    return VmSnapshot(sid, 'vm', name or sid, 'disk_only', t, 'running',
                      [SnapshotDisk('vda', '/s/%s.qcow2' % sid)], parent_snapshot=parent)


def test_remove_reparents_children_and_moves_current():
    tree = Tree('vm', [snap('a', t=1), snap('b', 'a', 2), snap('c', 'b', 3), snap('d', 'b', 4)], current='b')
    tree.remove('b')
    assert [c.id for c in tree.children('a')] == ['c', 'd']
    assert tree.current == 'a'
    tree.remove('a')
    assert tree.snapshots['c'].parent_snapshot is None and tree.current is None


def test_descendants_and_order_within_one_second():
    tree = Tree('vm', [snap('z', t=5), snap('y', 'z', 5), snap('x', 'y', 5)])
    assert [s.id for s in tree.ordered()] == ['z', 'y', 'x']
    assert [s.id for s in tree.descendants('z')] == ['y', 'x']


def test_round_trip_keeps_everything():
    tree = Tree('vm', [snap('a', t=1), snap('b', 'a', 2)], current='b', last_revert={'id': 'b', 'state': 'running'},
                deleting=['old'])
    tree.snapshots['a'].tags = ['x']
    again = Tree.from_dict(tree.to_dict())
    assert again.to_dict() == tree.to_dict()


def test_describe_derives_children_current_and_sizes():
    tree = Tree('vm', [snap('a', t=1), snap('b', 'a', 2)], current='b')
    record = tree.describe(tree.snapshots['a'], {'/s/a.qcow2': 4096})
    assert record['children'] == ['b'] and record['is_current'] is False
    assert record['size_bytes'] == 4096 and record['disk_files'][0]['size_bytes'] == 4096
    assert tree.describe(tree.snapshots['b'])['parent_name'] == 'a'


def test_ids_sort_by_time_and_are_unique():
    ids = [new_id(1700000000 + i) for i in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50
