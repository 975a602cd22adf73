# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Deleting a snapshot without losing what later snapshots, branches or the VM still show.

Internal snapshots are deleted by libvirt. For the others the frozen layer is merged into the
single image above it: block pull when that is the running VM's active image, block commit when
it is a frozen image the VM reads through, a safe qemu-img rebase offline (LUKS layers opened with
key_file; encrypted data is never merged into a clear image: _encryption.check_merge). The intent is written
first (tree.deleting), so a delete killed part-way is finished by the next run.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._chains import real, uppers
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import require_free
from ansible_collections.nova.snapshots.plugins.module_utils.model._crash import DELETE_MERGED, crash_point
from ansible_collections.nova.snapshots.plugins.module_utils.model._plan import Plan
from ansible_collections.nova.snapshots.plugins.module_utils.model._space import ranges_minus
from ansible_collections.nova.snapshots.plugins.module_utils.operations._checksums import refresh_checksums
from ansible_collections.nova.snapshots.plugins.module_utils.operations import _encryption
from ansible_collections.nova.snapshots.plugins.module_utils.operations._gc import collect_garbage
from ansible_collections.nova.snapshots.plugins.module_utils.operations._jobs import Step, block, concurrent, run_steps

MERGE_RESERVE = 1024 * 1024     # beyond the data a merge copies: qcow2 metadata, the header


def plan_delete(m, tree, name, children='keep', key_file=None):
    snap = tree.by_name(name)
    if snap is None:
        return Plan(False, before=None, after=None, snapshot=None)
    crypt = _encryption.open_chains(m, key_file, tree, 'deleting a snapshot') if snap.has_overlays else None
    victims = [snap] + (tree.descendants(snap.id) if children == 'delete' else [])
    before = m.describe(tree, snap)
    actions = ['delete snapshot %s of %s' % (s.name, m.domain.name) for s in victims]
    if children == 'keep' and tree.children(snap.id):
        actions.append('re-parent %s onto %s' % (', '.join(c.name for c in tree.children(snap.id)),
                                                 m.name_of(tree, snap.parent_snapshot) or 'nothing (new roots)'))

    def apply():
        tree.deleting.extend(s.name for s in victims if s.name not in tree.deleting)
        m.store.save(tree)
        for victim in reversed(victims):
            delete_one(m, tree, victim)
        _encryption.describe_persistent(m, crypt)
        collect_garbage(m, tree)
        _encryption.release_secret(m, tree)
        return before
    return Plan(True, actions, before=before, after=None, apply=apply)


def delete_one(m, tree, snap):
    if snap.snapshot_type == 'internal':
        # libvirt deletes internal snapshots itself (live or offline) and re-parents children.
        m.domain.delete_snapshot(snap.name, missing_ok=True)
    else:
        # every disk's merge planned first, then the block jobs of all disks run at once
        steps = [s for s in (layer_step(m, tree, snap, disk) for disk in snap.disk_files) if s is not None]
        run_steps(steps, parallel=concurrent(m))
        crash_point(DELETE_MERGED)
        m.domain.delete_snapshot(snap.name, metadata_only=True, missing_ok=True)
    for branch in tree.branches.values():
        branch.base = snap.parent_snapshot if branch.base == snap.id else branch.base
        branch.head = snap.parent_snapshot if branch.head == snap.id else branch.head
    tree.remove(snap.id)
    while snap.name in tree.deleting:
        tree.deleting.remove(snap.name)
    m.store.save(tree)


def own_ranges(m, path):
    """(data, covered): the ranges `path` itself holds data for, and those it covers (data or zeros)."""
    data, covered = [], []
    for e in m.qemu_img.map(path, m.view.info(path).format or 'qcow2'):
        if e.depth == 0 and e.present:
            covered.append((e.start, e.length))
            if e.data:
                data.append((e.start, e.length))
    return data, covered


def merge_copy_bytes(m, src, dest):
    """Bytes a merge of image `src` into `dest` (next to it in the chain) copies: `src`'s data `dest` does not cover.

    qemu-img map cannot open a LUKS layer without its key: for those, all of `src`'s allocation."""
    if any(m.view.info(p).raw.get('encrypted') for p in (src, dest)):
        return m.view.info(src).actual_size or 0
    return ranges_minus(own_ranges(m, src)[0], own_ranges(m, dest)[1])


def layer_step(m, tree, snap, disk):
    """The Step that merges `disk.file_path` into the one image above it, or None when there is nothing to do."""
    frozen = disk.file_path
    if not os.path.exists(frozen):
        return None
    for other in tree.snapshots.values():
        od = other.disk(disk.device)
        if other.id != snap.id and od and real(od.file_path) == real(frozen):
            return None     # another snapshot holds exactly this state
    if not m.store.owns(frozen):
        return None         # never rewrite or delete an image the collection did not create
    tops = [t for t in m.all_tops(tree) if real(t) != real(frozen)]
    above = uppers(m.view, frozen, tops)
    if len(above) != 1:
        return None         # nothing above (garbage, collected later) or a layer shared by branches
    upper = above[0]
    info = m.view.info(frozen)
    base, base_fmt = info.backing_file, info.backing_format
    vm_chain = []
    if m.domain.is_active:
        live_disk = m.domain_xml().disk(disk.device)
        if live_disk is not None and live_disk.source_file:
            vm_chain = [real(p) for p in m.view.chain(live_disk.source_file)]
    commit = bool(vm_chain) and real(upper) in vm_chain and real(upper) != vm_chain[0]
    method = 'pull' if vm_chain and real(upper) == vm_chain[0] else ('commit' if commit else 'rebase')
    _encryption.check_merge(m, frozen, upper, method)     # encrypted data is never written in clear
    # what the merge writes: the data of the image merged away that the one kept does not cover
    src, dest = (upper, frozen) if commit else (frozen, upper)
    copied = merge_copy_bytes(m, src, dest)
    require_free(os.path.dirname(dest), copied + copied // 32 + MERGE_RESERVE, 'merging %s into %s' % (frozen, upper))
    if vm_chain and real(upper) == vm_chain[0]:
        return Step(disk.device, lambda: block(m, disk.device).start_pull(base), m.view.invalidate)
    if commit:
        # a frozen image the running guest reads through: merge it down into ours instead
        def committed():
            tree.repoint_image(upper, frozen, new_backing=base, key=real)
            refresh_checksums(m, tree, {upper: frozen}, "the delete of snapshot '%s' merged into it" % snap.name)
            m.view.invalidate()
        return Step(disk.device, lambda: block(m, disk.device).start_commit(upper, frozen), committed)

    def offline():
        if _commit_down(m, upper, frozen, info, tops):
            # offline, the smaller layer moves: `upper` is written down into `frozen` (what a block commit
            # does live) and what was built on `upper` now builds on `frozen`; a rebase would copy `frozen`
            tree.repoint_image(upper, frozen, new_backing=base, key=real)
            refresh_checksums(m, tree, {upper: frozen}, "the delete of snapshot '%s' merged into it" % snap.name)
        else:
            m.qemu_img.rebase(upper, base, base_fmt)
            refresh_checksums(m, tree, {upper: upper}, "the delete of snapshot '%s' rebased it" % snap.name)
        m.view.invalidate()
    return Step(disk.device, offline)


def _commit_down(m, upper, frozen, info, tops):
    """Offline: commit `upper` (a frozen image, not a VM's or branch's disk) into `frozen` below it when
    it holds less, and point the images on it at `frozen`; False (nothing done) when a rebase is the way.

    Each step leaves every chain showing what it showed: committed, `frozen` shows what `upper` did."""
    children = uppers(m.view, upper, tops)
    if not children or not all(m.store.owns(p) for p in [upper] + children):
        return False
    above = m.view.info(upper)
    if (above.actual_size or 0) >= (info.actual_size or 0) or not _encryption.keeps_encrypted(m.view, [upper], frozen):
        return False        # a rebase copies less, or keeps `upper`'s encrypted data encrypted
    m.qemu_img.commit(upper, frozen, above.format or 'qcow2', rate=m.io_limit)
    for child in children:
        m.qemu_img.rebase(child, frozen, info.format or 'qcow2', unsafe=True)
    return True
