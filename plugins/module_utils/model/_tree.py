# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Tree algebra over a domain's snapshots: parent links, queries and drawings. Pure Python, no I/O.

A snapshot's parent lives in its record (`parent_snapshot`); the tree keeps a children index and a
name index next to it so that every query costs the size of its answer, not the size of the tree
(10,000 snapshots and chains as deep are normal for a VM snapshotted every hour for a year).
Once a snapshot is in a tree, change its parent only through `remove` or `reparent`, which keep
the indexes right. Nothing here recurses, so deep chains cannot hit Python's recursion limit.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Conflict
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import Branch, VmSnapshot


class InvalidParent(Conflict):
    pass


def _order(snap):
    """Siblings in the order they were taken; within one second (libvirt's resolution) by name."""
    return (snap.creation_time or 0, snap.name, snap.id)


class Tree(object):
    """A domain's snapshots with parent links, the current one and the branches pointing into it."""

    def __init__(self, vm_name, snapshots=None, current=None, last_revert=None, deleting=None,
                 branches=None, active_branch=None):
        self.vm_name = vm_name
        self.branches = dict((b.name, b) for b in (branches or []))
        self.active_branch = active_branch   # None until the first branch exists
        self.snapshots = {}
        self._children = {}   # parent id as the records say (None for roots) -> set of child ids
        self._ids_by_name = {}   # name -> ids in the order added: more than one only in hand-edited metadata
        for snap in snapshots or []:
            self._link(snap)
        self.current = current
        self.last_revert = last_revert    # {'id':, 'state':} of the last revert, until the tree moves on
        # Names being deleted: written before a delete starts, so that a crash part-way is finished
        # by the next run instead of the half-deleted snapshot being adopted back from libvirt.
        self.deleting = list(deleting or [])

    # -- indexes ------------------------------------------------------------------------------
    def _link(self, snap):
        if snap.id in self.snapshots:
            self._unlink(self.snapshots[snap.id])
        self.snapshots[snap.id] = snap
        self._children.setdefault(snap.parent_snapshot, set()).add(snap.id)
        self._ids_by_name.setdefault(snap.name, []).append(snap.id)

    def _unlink(self, snap):
        del self.snapshots[snap.id]
        self._drop_child(snap.parent_snapshot, snap.id)
        ids = self._ids_by_name[snap.name]
        ids.remove(snap.id)
        if not ids:
            del self._ids_by_name[snap.name]

    def _drop_child(self, parent_id, child_id):
        kids = self._children[parent_id]
        kids.discard(child_id)
        if not kids:
            del self._children[parent_id]

    def _set_parent(self, snap, parent_id):
        self._drop_child(snap.parent_snapshot, snap.id)
        snap.parent_snapshot = parent_id
        self._children.setdefault(parent_id, set()).add(snap.id)

    def _sorted(self, ids):
        return sorted((self.snapshots[i] for i in ids), key=_order)

    # -- queries ------------------------------------------------------------------------------
    def by_name(self, name):
        ids = self._ids_by_name.get(name)
        return self.snapshots[ids[0]] if ids else None

    def children(self, snap_id):
        return self._sorted(self._children.get(snap_id, ()))

    def roots(self):
        """Snapshots without a parent in this tree (none at all, or one deleted outside the collection)."""
        return self._sorted(i for parent, kids in self._children.items()
                            if parent is None or parent not in self.snapshots for i in kids)

    def path_to_root(self, snap_id):
        """[snap_id, its parent, ..., its root]. KeyError for an id not in the tree."""
        path, seen = [snap_id], set([snap_id])
        parent = self.snapshots[snap_id].parent_snapshot
        # `seen` stops at a loop, which only metadata edited by hand can contain.
        while parent in self.snapshots and parent not in seen:
            path.append(parent)
            seen.add(parent)
            parent = self.snapshots[parent].parent_snapshot
        return path

    def depth(self, snap_id):
        return len(self.path_to_root(snap_id)) - 1

    def common_ancestor(self, a, b):
        """The nearest snapshot both descend from (a snapshot descends from itself), or None."""
        on_a = set(self.path_to_root(a))
        for snap_id in self.path_to_root(b):
            if snap_id in on_a:
                return snap_id
        return None

    def descendants(self, snap_id):
        """Every snapshot below `snap_id`, depth first, siblings in `children` order: parents before children."""
        out, seen = [], set([snap_id])
        todo = self.children(snap_id)[::-1]
        while todo:
            snap = todo.pop()
            if snap.id not in seen:   # only a hand-edited loop could bring a snapshot round again
                seen.add(snap.id)
                out.append(snap)
                todo.extend(self.children(snap.id)[::-1])
        return out

    def _depths(self):
        depths, todo = {}, [(s.id, 0) for s in self.roots()]
        while todo:
            snap_id, depth = todo.pop()
            depths[snap_id] = depth
            todo.extend((kid, depth + 1) for kid in self._children.get(snap_id, ()))
        # What no root reaches hangs off a hand-edited loop.
        for snap_id in self.snapshots:
            if snap_id not in depths:
                depths[snap_id] = self.depth(snap_id)
        return depths

    def ordered(self):
        """Oldest first; within the same second (libvirt's resolution) parents before children."""
        depths = self._depths()
        return sorted(self.snapshots.values(), key=lambda s: (s.creation_time or 0, depths[s.id], s.name))

    # -- changes ------------------------------------------------------------------------------
    def add(self, snap, make_current=True):
        self._link(snap)
        if make_current:
            self.current = snap.id
        self.last_revert = None

    def remove(self, snap_id):
        """Drop one snapshot; its children move up to its parent, and so does `current`."""
        snap = self.snapshots[snap_id]
        self._unlink(snap)
        for child_id in list(self._children.get(snap_id, ())):
            self._set_parent(self.snapshots[child_id], snap.parent_snapshot)
        if self.current == snap_id:
            self.current = snap.parent_snapshot
        if self.last_revert and self.last_revert.get('id') == snap_id:
            self.last_revert = None
        return snap

    def reparent(self, snap_id, new_parent_id):
        """Hang `snap_id` (and everything below it) under `new_parent_id`; None makes it a root."""
        snap = self.snapshots[snap_id]
        problem = self._unfit_parent(snap_id, new_parent_id)
        if problem:
            parent = self.snapshots.get(new_parent_id)
            raise InvalidParent("cannot move snapshot '%s' of '%s' under '%s': %s"
                                % (snap.name, self.vm_name, parent.name if parent else new_parent_id, problem),
                                snapshot=snap.name)
        self._set_parent(snap, new_parent_id)

    def _unfit_parent(self, snap_id, parent_id):
        if parent_id is None:
            return None
        if parent_id not in self.snapshots:
            return 'no such snapshot in its tree'
        if snap_id in self.path_to_root(parent_id):
            return 'that is the snapshot itself or one of its descendants'
        return None

    # -- images ---------------------------------------------------------------------------------
    def repoint_image(self, old, new, new_backing=None, key=None):
        """An image moved or took another's place: every record that names `old` names `new`.

        Snapshot disks whose frozen image was `old` get `new` (and `new_backing` as their backing
        file, when given: a commit changes what lies below too); those backed by `old` are backed
        by `new`; inactive branches' images follow. `key` normalises paths before comparing
        (callers pass os.path.realpath; this class does no I/O). Returns how many references moved.
        """
        key = key or (lambda p: p)
        old_key = key(old)
        moved = 0
        for snap in self.snapshots.values():
            for disk in snap.disk_files:
                if disk.file_path and key(disk.file_path) == old_key:
                    disk.file_path = new
                    if new_backing is not None:
                        disk.backing_file = new_backing
                    moved += 1
                elif disk.backing_file and key(disk.backing_file) == old_key:
                    disk.backing_file = new
                    moved += 1
        for branch in self.branches.values():
            for table in (branch.disks, branch.activating):
                for device, path in list(table.items()):
                    if key(path) == old_key:
                        table[device] = new
                        moved += 1
        return moved

    # -- records ------------------------------------------------------------------------------
    def to_dict(self):
        return dict(version=1, vm_name=self.vm_name, current=self.current, last_revert=self.last_revert,
                    deleting=self.deleting, snapshots=[s.to_dict() for s in self.ordered()],
                    branches=[b.to_dict() for _n, b in sorted(self.branches.items())],
                    active_branch=self.active_branch)

    @classmethod
    def from_dict(cls, data):
        return cls(data['vm_name'], [VmSnapshot.from_dict(s) for s in data.get('snapshots', [])],
                   data.get('current'), data.get('last_revert'), data.get('deleting'),
                   [Branch.from_dict(b) for b in data.get('branches', [])], data.get('active_branch'))

    def describe(self, snap, sizes=None):
        """The record as modules return it (the nova design's VmSnapshot), derived fields filled in."""
        data = snap.to_dict()
        data['children'] = [c.id for c in self.children(snap.id)]
        data['is_current'] = snap.id == self.current
        parent = self.snapshots.get(snap.parent_snapshot)
        data['parent_name'] = parent.name if parent else None
        sizes = sizes or {}
        for d in data['disk_files']:
            d['size_bytes'] = sizes.get(d['file_path'])
        data['size_bytes'] = sum(d['size_bytes'] or 0 for d in data['disk_files']) + (sizes.get(snap.memory_file) or 0)
        return data


# -- drawings ---------------------------------------------------------------------------------
def _marks(tree, roots):
    """id -> the words drawn after a snapshot's name: (root), * for current, [branch] at a branch's tip."""
    marks = dict((r.id, ['(root)']) for r in roots)
    if tree.current in tree.snapshots:
        marks.setdefault(tree.current, []).append('*')
    for name, branch in sorted(tree.branches.items()):
        if branch.tip in tree.snapshots:
            marks.setdefault(branch.tip, []).append('[%s]' % name)
    return marks


def _with_last(snaps, prefix):
    """(snap, prefix, is_last) for a stack: reversed, so that popping yields them in order."""
    return [(s, prefix, i == len(snaps) - 1) for i, s in enumerate(snaps)][::-1]


def render_text(tree):
    """The tree as `nova snapshot tree` draws it: one line per snapshot under two header lines."""
    roots = tree.roots()
    marks = _marks(tree, roots)
    lines = ['VM: %s' % tree.vm_name, '│']
    todo = _with_last(roots, '')
    if len(roots) == 1:
        # `nova snapshot tree` draws a lone root with a tee too, as if the VM's line went on below it.
        todo = [(roots[0], '', False)]
    while todo:
        snap, prefix, last = todo.pop()
        lines.append(prefix + ('└─ ' if last else '├─ ') + ' '.join([snap.name] + marks.get(snap.id, [])))
        todo.extend(_with_last(tree.children(snap.id), prefix + ('   ' if last else '│  ')))
    return '\n'.join(lines)


def _dot_string(text):
    return '"%s"' % text.replace('\\', '\\\\').replace('"', '\\"')


def render_dot(tree):
    """The tree as a Graphviz digraph: parent -> child edges, dashed edges from merge parents,
    the current snapshot bold and filled, each branch a box pointing at its tip. Sorted, so stable."""
    lines = ['digraph %s {' % _dot_string(tree.vm_name)]
    snaps = sorted(tree.snapshots.values(), key=lambda s: s.id)
    for snap in snaps:
        style = ', style="bold,filled"' if snap.id == tree.current else ''
        lines.append('  %s [label=%s%s];' % (_dot_string(snap.id), _dot_string(snap.name), style))
    for snap in snaps:
        if snap.parent_snapshot in tree.snapshots:
            lines.append('  %s -> %s;' % (_dot_string(snap.parent_snapshot), _dot_string(snap.id)))
        for merged in sorted(set(snap.merge_parents) & set(tree.snapshots)):
            lines.append('  %s -> %s [style=dashed];' % (_dot_string(merged), _dot_string(snap.id)))
    for name, branch in sorted(tree.branches.items()):
        node = _dot_string('branch:%s' % name)
        lines.append('  %s [shape=box, label=%s];' % (node, _dot_string(name)))
        if branch.tip in tree.snapshots:
            lines.append('  %s -> %s;' % (node, _dot_string(branch.tip)))
    lines.append('}')
    return '\n'.join(lines)
