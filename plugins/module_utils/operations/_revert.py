# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Reverting to a snapshot.

Internal snapshots are reverted by libvirt. External, memory and disk-only ones by the collection
(libvirt 9.0 refuses to): new overlays on the snapshot's frozen images, the persistent definition
pointed at them, and RAM restored from the memory file with its saved XML edited to the new disks.
The overlay helpers here are also what a branch switch uses to bring a branch up.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._domain_xml import DomainXML
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._snapshot_xml import SnapshotXML
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused, SnapshotNotFound
from ansible_collections.nova.snapshots.plugins.module_utils.model._plan import Plan
from ansible_collections.nova.snapshots.plugins.module_utils.operations._gc import collect_garbage


def plan_revert(m, tree, name, after='snapshot', force=False):
    snap = tree.by_name(name)
    if snap is None:
        raise SnapshotNotFound(m.domain.name, name)
    has_ram = snap.has_memory or (snap.snapshot_type == 'internal' and snap.vm_state in ('running', 'paused'))
    if after == 'snapshot':
        target = snap.vm_state if has_ram and snap.vm_state in ('running', 'paused') else 'shutoff'
    else:
        target = after
    state = m.domain.state
    before = dict(current=m.current_name(tree), state=state)
    result = dict(current=name, state=target)
    if (not force and tree.current == snap.id and tree.last_revert == dict(id=snap.id, state=target)
            and state == target):
        return Plan(False, before=before, after=before, snapshot=m.describe(tree, snap))
    how = 'restore RAM from %s' % snap.memory_file if (snap.memory_file and target != 'shutoff') else (
        'boot' if target != 'shutoff' and not has_ram else '')
    actions = ['revert %s to %s snapshot %s%s, leave it %s' % (m.domain.name, snap.snapshot_type, name,
                                                               ' (%s)' % how if how else '', target)]

    def apply():
        if snap.snapshot_type == 'internal':
            revert_internal(m, snap, target, has_ram)
        else:
            revert_overlays(m, tree, snap, target)
            mark_current_in_libvirt(m, tree, snap)
        tree.current = snap.id
        tree.last_revert = dict(id=snap.id, state=target)
        if tree.active_branch in tree.branches:
            tree.branches[tree.active_branch].head = snap.id     # like git reset --hard
        m.store.save(tree)
        collect_garbage(m, tree)
        return m.describe(tree, snap)
    return Plan(True, actions, before=before, after=result, apply=apply)


def revert_internal(m, snap, target, has_ram):
    if target == 'shutoff':
        m.domain.revert_internal(snap.name)
        m.domain.destroy()
    elif has_ram or target == 'running':
        m.domain.revert_internal(snap.name, after=target)
    else:
        m.domain.revert_internal(snap.name, after='paused')


def revert_overlays(m, tree, snap, target):
    check_intact(m, snap, with_ram=target != 'shutoff')
    m.domain.destroy()
    persistent = DomainXML(m.domain.xml(inactive=True))
    new = new_overlays(m, snap, persistent, overlay_paths(m, snap))
    m.hypervisor.define(persistent.to_string())
    bring_up(m, new, snap.memory_file, target)


def check_intact(m, snap, with_ram):
    for d in snap.disk_files:
        if not os.path.exists(d.file_path):
            raise Refused("snapshot '%s' is damaged: its image %s for %s is missing" % (snap.name, d.file_path, d.device))
    if snap.memory_file and with_ram and not os.path.exists(snap.memory_file):
        raise Refused("snapshot '%s' is damaged: its memory file %s is missing" % (snap.name, snap.memory_file))


def overlay_paths(m, snap):
    """Fresh paths for new overlays on `snap`'s frozen images (one per disk it covers)."""
    return dict((d.device, os.path.join(m.store.active_dir, 'disk_%s-%s.qcow2'
                                        % (d.device, binascii.hexlify(os.urandom(4)).decode())))
                for d in snap.disk_files)


def new_overlays(m, snap, persistent, paths):
    """Create overlays at `paths` on `snap`'s frozen images and point the definition at them."""
    m.store.make_dir(m.store.active_dir)
    for d in snap.disk_files:
        disk = persistent.disk(d.device)
        if disk is None:
            raise Refused("domain '%s' no longer has disk %s that snapshot '%s' covers"
                          % (m.domain.name, d.device, snap.name))
        if not os.path.exists(paths[d.device]):
            m.qemu_img.create_overlay(paths[d.device], d.file_path, d.format)
            os.chmod(paths[d.device], 0o600)
        disk.point_at(paths[d.device])
    return paths


def bring_up(m, disks, memory_file, target):
    """Start the (defined, stopped) VM in state `target`: from `memory_file` when there is one,
    with its saved XML pointed at `disks`, else by booting; `shutoff` leaves it off."""
    if target == 'shutoff':
        return
    if memory_file:
        saved = DomainXML(m.hypervisor.save_image_xml(memory_file))
        for disk in saved.disks:
            if disk.target in disks:
                disk.point_at(disks[disk.target])
        m.hypervisor.restore(memory_file, saved.to_string(), paused=target == 'paused')
    else:
        m.domain.start(paused=target == 'paused')


def mark_current_in_libvirt(m, tree, snap):
    """Make `snap` libvirt's current snapshot too, with the parent our tree has."""
    try:
        sx = SnapshotXML(m.domain.snapshot_xml(snap.name))
    except SnapshotNotFound:
        saved = m.store.snapshot_xml(snap.id)
        if saved is None:
            return
        sx = SnapshotXML(saved)
    sx.parent = m.name_of(tree, snap.parent_snapshot)
    m.domain.redefine_snapshot(sx.to_string(), current=True)
