# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""The snapshot engine: create, revert and delete, each planned first and applied only on request.

Internal snapshots go through libvirt. External, memory and disk-only snapshots are reverted and
deleted by the collection itself, because libvirt 9.0 refuses to: a revert puts new overlays on
the snapshot's frozen images (and restores RAM from its memory file), a delete merges the frozen
layer into the single image above it (block pull/commit live, qemu-img rebase offline).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import os

from ansible_collections.nova.snapshots.plugins.module_utils.operations._chain_health import live_chain
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._chains import ChainView, needed_files, real, uppers
from ansible_collections.nova.snapshots.plugins.module_utils.model._crash import crash_point
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._domain_xml import DomainXML
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NovaError, SnapshotNotFound
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import (
    OVERLAY_TYPES,
    SnapshotDisk,
    VmSnapshot,
    new_id,
    validate_name,
)
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._snapshot_xml import SnapshotXML
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._store import Store
from ansible_collections.nova.snapshots.plugins.module_utils.operations._ownership import check_ownership

OVERLAY_RESERVE = 8 * 1024 * 1024     # free space wanted per new overlay
MEMORY_MARGIN = 1.1                   # a memory file can exceed guest RAM a little (device state)


class Plan(object):
    """What an operation would do: `changed`, human-readable `actions`, diff `before`/`after`."""

    def __init__(self, changed, actions=None, before=None, after=None, snapshot=None, apply=None, extra=None):
        self.changed = changed
        self.extra = extra or {}      # further keys for the module's result (merge conflicts, ...)
        self.actions = actions or []
        self.before = before
        self.after = after
        self.snapshot = snapshot
        self.apply = apply


def free_bytes(path):
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def disk_usage(path):
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return None


class SnapshotManager(object):
    def __init__(self, hypervisor, domain_name, storage_dir, qemu_img, lock_timeout=60, job_timeout=600):
        self.hypervisor = hypervisor
        self.domain = hypervisor.domain(domain_name)
        self.store = Store(storage_dir, domain_name, owner=hypervisor.qemu_owner(), lock_timeout=lock_timeout)
        self.qemu_img = qemu_img
        self.view = ChainView(qemu_img)
        self.job_timeout = job_timeout

    # -- running a plan -----------------------------------------------------------------------
    def run(self, check_mode, planner):
        """Plan with planner(tree) -> Plan; apply it unless in check mode; the module's result.

        The first plan is made without the lock and without writing anything, so refused input
        and no-op runs leave no trace. A change is planned again under the lock (another run may
        have changed the tree meanwhile), then applied.
        """
        tree, adopted = self.load(write=False)
        plan = planner(tree)
        if check_mode or not (plan.changed or adopted or tree.deleting or self.unsynced):
            snapshot = plan.snapshot if not plan.changed else plan.before
        else:
            with self.store.lock():
                tree, adopted = self.load()
                plan = planner(tree)
                snapshot = plan.apply() if plan.changed else plan.snapshot
        result = dict(changed=plan.changed, actions=plan.actions, snapshot=snapshot, adopted=adopted,
                      diff=dict(before=plan.before or {}, after=plan.after or {}))
        result.update(plan.extra)
        return result

    def read(self, write=True):
        """The reconciled tree for a read-only caller; adopting takes the lock like any change."""
        if not write or not (self.domain.snapshot_xmls() or os.path.exists(self.store.tree_path)):
            return self.load(write=False)
        with self.store.lock():
            return self.load()

    # -- observation --------------------------------------------------------------------------
    def domain_xml(self, inactive=False):
        return DomainXML(self.domain.xml(inactive=inactive or not self.domain.is_active))

    def load(self, write=True):
        """The tree, reconciled with libvirt: snapshots made outside the collection are adopted,
        deletions a crash interrupted are finished. Returns (tree, adopted names)."""
        check_ownership(self.domain, self.store, write)     # a migrated VM's store or disks: refused
        tree = self.store.load()
        in_libvirt = dict(self.domain.snapshot_xmls())
        for name in list(tree.deleting):
            if tree.by_name(name) is None:
                if name in in_libvirt and write:
                    self.domain.delete_snapshot(name, metadata_only=True)
                in_libvirt.pop(name, None)
                tree.deleting.remove(name)
        pending = [SnapshotXML(xml) for name, xml in in_libvirt.items()
                   if tree.by_name(name) is None and name not in tree.deleting]
        adopted = []
        for sx in sorted(pending, key=lambda s: (s.creation_time or 0, s.name)):
            tree.add(self._adopt(tree, sx), make_current=False)
            adopted.append(sx.name)
        # Ours but missing from libvirt (a run died before telling it): tell it now.
        self.unsynced = [s for s in tree.ordered() if s.name not in in_libvirt and s.name not in tree.deleting
                         and os.path.exists(self.store.xml_path(s.id))]
        if write:
            for snap in self.unsynced:
                sx = SnapshotXML(self.store.snapshot_xml(snap.id))
                sx.parent = self._name(tree, snap.parent_snapshot)
                self.domain.redefine_snapshot(sx.to_string(), current=snap.id == tree.current)
        if adopted:
            current = tree.by_name(self.domain.current_snapshot_name() or '')
            tree.current = current.id if current else tree.current
            if write:
                for name in adopted:
                    self.store.save_snapshot_xml(tree.by_name(name).id, in_libvirt[name])
                self.store.save(tree)
        return tree, adopted

    def _adopt(self, tree, sx):
        parent = tree.by_name(sx.parent) if sx.parent else None
        stype = sx.snapshot_type
        disks = []
        if stype == 'internal':
            dom_disks = dict((d.target, d) for d in (DomainXML(sx.domain).disks if sx.domain is not None else []))
            for d in sx.disks:
                if d.snapshot == 'internal' and d.name in dom_disks and dom_disks[d.name].source_file:
                    path = dom_disks[d.name].source_file
                    disks.append(SnapshotDisk(d.name, path, dom_disks[d.name].driver_type or 'qcow2', self._backing(path)))
        else:
            for d in sx.disks:
                if d.snapshot == 'external' and d.source_file and os.path.exists(d.source_file):
                    info = self.view.info(d.source_file)
                    if info.backing_file:
                        disks.append(SnapshotDisk(d.name, info.backing_file, info.backing_format or 'raw',
                                                  self._backing(info.backing_file)))
        return VmSnapshot(new_id(sx.creation_time), self.domain.name, sx.name, stype, sx.creation_time, sx.state,
                          disks, description=sx.description, parent_snapshot=parent.id if parent else None,
                          memory_file=sx.memory_file if sx.memory_mode == 'external' else None,
                          origin='adopted')

    def _backing(self, path):
        try:
            return self.view.backing(path)
        except NovaError:
            return None

    def describe(self, tree, snap):
        sizes = dict((d.file_path, disk_usage(d.file_path)) for d in snap.disk_files)
        if snap.memory_file:
            sizes[snap.memory_file] = disk_usage(snap.memory_file)
        data = tree.describe(snap, sizes)
        data['config_snapshot'] = self.store.xml_path(snap.id) if os.path.exists(self.store.xml_path(snap.id)) else None
        return data

    def active_tops(self):
        """The top image of every disk in the persistent and (when running) live definitions."""
        tops = [d.source_file for d in DomainXML(self.domain.xml(inactive=True)).disks if d.source_file]
        if self.domain.is_active:
            tops += [d.source_file for d in DomainXML(self.domain.xml()).disks if d.source_file]
        return [t for t in tops if os.path.isfile(t)]

    def writable_tops(self, tree):
        """The images something writes to: the VM's, and each inactive branch's."""
        return self.active_tops() + [p for b in tree.branches.values()
                                     for p in list(b.disks.values()) + list(b.activating.values())]

    def all_tops(self, tree):
        """Every image something needs: the VM's, every snapshot's and every inactive branch's."""
        return self.writable_tops(tree) + [d.file_path for s in tree.snapshots.values() for d in s.disk_files]

    def open_images(self):
        """Real paths of every image the running VM holds open (libvirt's live chains); none when off."""
        if not self.domain.is_active:
            return set()
        return set(real(p) for d in DomainXML(self.domain.xml()).disks if d.source_file for p in live_chain(d))

    # -- create -------------------------------------------------------------------------------
    def plan_create(self, tree, name, snapshot_type, description=None, tags=None, category=None,
                    disks=None, quiesce=False):
        validate_name(name)
        existing = tree.by_name(name)
        state = self.domain.state
        dom = self.domain_xml()
        writable = [d for d in dom.disks if d.writable]
        targets = self.select_disks(dom, writable, disks)
        if existing is not None:
            return self._same_settings(tree, existing, snapshot_type, description, tags, category, disks)
        snapshot_type = snapshot_type or 'external'
        tags = list(tags or [])

        if snapshot_type == 'memory' and state not in ('running', 'paused'):
            raise NovaError("a memory snapshot needs a running or paused VM; domain '%s' is %s"
                            % (self.domain.name, state))
        if quiesce:
            if snapshot_type == 'internal':
                raise NovaError('quiesce works with external, memory and disk_only snapshots; '
                                'libvirt cannot quiesce an internal snapshot')
            if state != 'running':
                raise NovaError("quiesce needs a running guest; domain '%s' is %s" % (self.domain.name, state))
            why = self.domain.agent_ping()
            if why:
                raise NovaError("quiesce needs the guest agent, but the agent of domain '%s' does not answer: %s"
                                % (self.domain.name, why))
        kinds = set(s.snapshot_type == 'internal' for s in tree.snapshots.values())
        if kinds and (snapshot_type == 'internal') not in kinds:
            have = 'internal' if True in kinds else 'external'
            raise NovaError("domain '%s' already has %s snapshots; this collection does not mix internal and "
                            "external snapshots in one history (an internal snapshot inside an image that "
                            "other snapshots freeze could not be reverted safely)" % (self.domain.name, have))
        if snapshot_type == 'internal':
            raw = [d.target for d in writable if d.target in targets and d.driver_type != 'qcow2']
            if raw:
                raise NovaError('internal snapshots need qcow2 disks; %s %s not qcow2'
                                % (', '.join(raw), 'is' if len(raw) == 1 else 'are'))

        with_memory = state in ('running', 'paused') and snapshot_type != 'disk_only'
        self._check_space(dom, snapshot_type, with_memory, targets)
        snap_id = new_id()
        after = dict(name=name, snapshot_type=snapshot_type, disks=sorted(targets), memory=with_memory,
                     description=description, tags=tags, category=category)
        actions = ['take %s snapshot %s of %s (disks %s%s)' % (snapshot_type, name, self.domain.name,
                                                               ', '.join(sorted(targets)), ', with RAM' if with_memory else '')]

        def apply():
            return self._create(tree, snap_id, name, snapshot_type, dom, targets, with_memory, description,
                                tags, category, quiesce)
        return Plan(True, actions, before=None, after=after, apply=apply)

    def target_disks(self, dom, disks):
        """The targets of `disks` (default: every writable disk of `dom`), checked."""
        return self.select_disks(dom, [d for d in dom.disks if d.writable], disks)

    def select_disks(self, dom, writable, disks):
        known = dict((d.target, d) for d in dom.disks)
        if not disks:
            return set(d.target for d in writable)
        missing = [d for d in disks if d not in known]
        if missing:
            raise NovaError("domain '%s' has no disk %s; its disks are %s"
                            % (self.domain.name, ', '.join(missing), ', '.join(sorted(known))))
        unwritable = [d for d in disks if not known[d].writable]
        if unwritable:
            raise NovaError('disk %s cannot be snapshotted (read-only, shared, or not a disk)' % ', '.join(unwritable))
        return set(disks)

    def _same_settings(self, tree, existing, snapshot_type, description, tags, category, disks):
        """An existing snapshot is fine when every setting the task gives matches (unset ones are not compared)."""
        asked = dict(snapshot_type=snapshot_type, description=description, category=category,
                     tags=sorted(tags) if tags is not None else None, disks=sorted(disks) if disks else None)
        have = dict(snapshot_type=existing.snapshot_type, description=existing.description,
                    tags=sorted(existing.tags), category=existing.category,
                    disks=sorted(d.device for d in existing.disk_files))
        diff = ['%s is %r (asked %r)' % (k, have[k], asked[k]) for k in sorted(asked)
                if asked[k] is not None and asked[k] != have[k]]
        if existing.origin == 'adopted' and diff == ['snapshot_type is %r (asked %r)' % (have['snapshot_type'], snapshot_type)] \
                and snapshot_type in OVERLAY_TYPES and have['snapshot_type'] in OVERLAY_TYPES:
            diff = []   # libvirt cannot tell external from memory; trust the user for adopted ones
        if diff:
            raise NovaError("snapshot '%s' of domain '%s' already exists with different settings: %s"
                            % (existing.name, self.domain.name, '; '.join(diff)), snapshot=existing.name)
        return Plan(False, snapshot=self.describe(tree, existing))

    def _check_space(self, dom, snapshot_type, with_memory, targets):
        need_store = 0
        if snapshot_type in OVERLAY_TYPES:
            need_store += OVERLAY_RESERVE * len(targets)
            if with_memory:
                need_store += int(dom.memory_bytes * MEMORY_MARGIN)
        elif with_memory:
            # internal: the RAM state is written into the first disk's qcow2 file
            first = [d for d in dom.disks if d.target in targets][0].source_file
            if free_bytes(os.path.dirname(first)) < dom.memory_bytes * MEMORY_MARGIN:
                raise NovaError('not enough free space next to %s for the RAM state (%d MiB needed); nothing was changed'
                                % (first, dom.memory_bytes * MEMORY_MARGIN // 2 ** 20))
        if need_store and free_bytes(self.store.root) < need_store:
            raise NovaError('not enough free space in %s: %d MiB needed, %d MiB free; nothing was changed'
                            % (self.store.root, need_store // 2 ** 20, free_bytes(self.store.root) // 2 ** 20))

    def _create(self, tree, snap_id, name, snapshot_type, dom, targets, with_memory, description, tags,
                category, quiesce):
        store = self.store
        store.make_dir(store.snapshot_dir(snap_id))
        sx = SnapshotXML()
        sx.name = name
        sx.description = description
        overlay = snapshot_type in OVERLAY_TYPES
        if overlay:
            sx.memory_mode = 'external' if with_memory else 'no'
            if with_memory:
                sx.memory_file = store.memory_path(snap_id)
        else:
            sx.memory_mode = 'internal' if with_memory else 'no'
        disks_node = sx.root.makeelement('disks')
        sx.root.append(disks_node)
        frozen = []
        for disk in dom.disks:
            if disk.device not in (None, 'disk'):
                continue
            node = disks_node.makeelement('disk', name=disk.target)
            disks_node.append(node)
            if disk.target not in targets:
                node.set('snapshot', 'no')
                continue
            node.set('snapshot', 'external' if overlay else 'internal')
            if overlay:
                node.append(node.makeelement('driver', type='qcow2'))
                node.append(node.makeelement('source', file=store.overlay_path(snap_id, disk.target)))
            backing = disk.backing_file      # from libvirt's live XML: no qemu-img call on the hot path
            frozen.append(SnapshotDisk(disk.target, disk.source_file, disk.driver_type or 'raw',
                                       (backing or None) if backing is not None else self._backing(disk.source_file)))
        live = overlay and with_memory and self.domain.state == 'running'
        made = SnapshotXML(self.domain.create_snapshot(sx.to_string(), disk_only=not with_memory and overlay,
                                                       quiesce=quiesce, live=live))
        if with_memory and overlay:
            os.chmod(store.memory_path(snap_id), 0o600)
        parent = tree.by_name(made.parent) if made.parent else None
        snap = VmSnapshot(snap_id, self.domain.name, name, snapshot_type, made.creation_time, made.state, frozen,
                          description=description, parent_snapshot=parent.id if parent else None,
                          memory_file=made.memory_file if overlay and with_memory else None,
                          tags=tags, category=category, quiesced=bool(quiesce))
        store.save_snapshot_xml(snap_id, made.to_string())
        tree.add(snap)
        if tree.active_branch in tree.branches:
            tree.branches[tree.active_branch].head = snap.id
        store.save(tree)
        return self.describe(tree, snap)

    # -- revert -------------------------------------------------------------------------------
    def plan_revert(self, tree, name, after='snapshot', force=False):
        snap = tree.by_name(name)
        if snap is None:
            raise SnapshotNotFound(self.domain.name, name)
        has_ram = snap.has_memory or (snap.snapshot_type == 'internal' and snap.vm_state in ('running', 'paused'))
        if after == 'snapshot':
            target = snap.vm_state if has_ram and snap.vm_state in ('running', 'paused') else 'shutoff'
        else:
            target = after
        state = self.domain.state
        before = dict(current=self._current_name(tree), state=state)
        result = dict(current=name, state=target)
        if (not force and tree.current == snap.id and tree.last_revert == dict(id=snap.id, state=target)
                and state == target):
            return Plan(False, before=before, after=before, snapshot=self.describe(tree, snap))
        how = 'restore RAM from %s' % snap.memory_file if (snap.memory_file and target != 'shutoff') else (
            'boot' if target != 'shutoff' and not has_ram else '')
        actions = ['revert %s to %s snapshot %s%s, leave it %s' % (self.domain.name, snap.snapshot_type, name,
                                                                   ' (%s)' % how if how else '', target)]

        def apply():
            if snap.snapshot_type == 'internal':
                self._revert_internal(snap, target, has_ram)
            else:
                self._revert_overlays(tree, snap, target)
                self._mark_current_in_libvirt(tree, snap)
            tree.current = snap.id
            tree.last_revert = dict(id=snap.id, state=target)
            if tree.active_branch in tree.branches:
                tree.branches[tree.active_branch].head = snap.id     # like git reset --hard
            self.store.save(tree)
            self._gc(tree)
            return self.describe(tree, snap)
        return Plan(True, actions, before=before, after=result, apply=apply)

    def _current_name(self, tree):
        cur = tree.snapshots.get(tree.current)
        return cur.name if cur else None

    def _revert_internal(self, snap, target, has_ram):
        if target == 'shutoff':
            self.domain.revert_internal(snap.name)
            self.domain.destroy()
        elif has_ram or target == 'running':
            self.domain.revert_internal(snap.name, after=target)
        else:
            self.domain.revert_internal(snap.name, after='paused')

    def _revert_overlays(self, tree, snap, target):
        self._check_intact(snap, with_ram=target != 'shutoff')
        self.domain.destroy()
        persistent = DomainXML(self.domain.xml(inactive=True))
        new = self._new_overlays(snap, persistent, self._overlay_paths(snap))
        self.hypervisor.define(persistent.to_string())
        self._bring_up(new, snap.memory_file, target)

    def _check_intact(self, snap, with_ram):
        for d in snap.disk_files:
            if not os.path.exists(d.file_path):
                raise NovaError("snapshot '%s' is damaged: its image %s for %s is missing" % (snap.name, d.file_path, d.device))
        if snap.memory_file and with_ram and not os.path.exists(snap.memory_file):
            raise NovaError("snapshot '%s' is damaged: its memory file %s is missing" % (snap.name, snap.memory_file))

    def _overlay_paths(self, snap):
        """Fresh paths for new overlays on `snap`'s frozen images (one per disk it covers)."""
        return dict((d.device, os.path.join(self.store.active_dir, 'disk_%s-%s.qcow2'
                                            % (d.device, binascii.hexlify(os.urandom(4)).decode())))
                    for d in snap.disk_files)

    def _new_overlays(self, snap, persistent, paths):
        """Create overlays at `paths` on `snap`'s frozen images and point the definition at them."""
        self.store.make_dir(self.store.active_dir)
        for d in snap.disk_files:
            disk = persistent.disk(d.device)
            if disk is None:
                raise NovaError("domain '%s' no longer has disk %s that snapshot '%s' covers"
                                % (self.domain.name, d.device, snap.name))
            if not os.path.exists(paths[d.device]):
                self.qemu_img.create_overlay(paths[d.device], d.file_path, d.format)
                os.chmod(paths[d.device], 0o600)
            disk.point_at(paths[d.device])
        return paths

    def _bring_up(self, disks, memory_file, target):
        """Start the (defined, stopped) VM in state `target`: from `memory_file` when there is one,
        with its saved XML pointed at `disks`, else by booting; `shutoff` leaves it off."""
        if target == 'shutoff':
            return
        if memory_file:
            saved = DomainXML(self.hypervisor.save_image_xml(memory_file))
            for disk in saved.disks:
                if disk.target in disks:
                    disk.point_at(disks[disk.target])
            self.hypervisor.restore(memory_file, saved.to_string(), paused=target == 'paused')
        else:
            self.domain.start(paused=target == 'paused')

    def _mark_current_in_libvirt(self, tree, snap):
        """Make `snap` libvirt's current snapshot too, with the parent our tree has."""
        try:
            sx = SnapshotXML(self.domain.snapshot_xml(snap.name))
        except SnapshotNotFound:
            saved = self.store.snapshot_xml(snap.id)
            if saved is None:
                return
            sx = SnapshotXML(saved)
        sx.parent = self._name(tree, snap.parent_snapshot)
        self.domain.redefine_snapshot(sx.to_string(), current=True)

    # -- delete -------------------------------------------------------------------------------
    def plan_delete(self, tree, name, children='keep'):
        snap = tree.by_name(name)
        if snap is None:
            return Plan(False, before=None, after=None, snapshot=None)
        victims = [snap] + (tree.descendants(snap.id) if children == 'delete' else [])
        before = self.describe(tree, snap)
        actions = ['delete snapshot %s of %s' % (s.name, self.domain.name) for s in victims]
        if children == 'keep' and tree.children(snap.id):
            actions.append('re-parent %s onto %s' % (', '.join(c.name for c in tree.children(snap.id)),
                                                     self._name(tree, snap.parent_snapshot) or 'nothing (new roots)'))

        def apply():
            tree.deleting.extend(s.name for s in victims if s.name not in tree.deleting)
            self.store.save(tree)
            for victim in reversed(victims):
                self._delete_one(tree, victim)
            self._gc(tree)
            return before
        return Plan(True, actions, before=before, after=None, apply=apply)

    def _name(self, tree, snap_id):
        s = tree.snapshots.get(snap_id)
        return s.name if s else None

    def _delete_one(self, tree, snap):
        if snap.snapshot_type == 'internal':
            # libvirt deletes internal snapshots itself (live or offline) and re-parents children.
            self.domain.delete_snapshot(snap.name, missing_ok=True)
        else:
            for disk in snap.disk_files:
                self._drop_layer(tree, snap, disk)
            crash_point('delete-merged')
            self.domain.delete_snapshot(snap.name, metadata_only=True, missing_ok=True)
        for branch in tree.branches.values():
            branch.base = snap.parent_snapshot if branch.base == snap.id else branch.base
            branch.head = snap.parent_snapshot if branch.head == snap.id else branch.head
        tree.remove(snap.id)
        while snap.name in tree.deleting:
            tree.deleting.remove(snap.name)
        self.store.save(tree)

    def _drop_layer(self, tree, snap, disk):
        """Stop needing `disk.file_path` for `snap`: merge it into the one image above it, if any."""
        frozen = disk.file_path
        if not os.path.exists(frozen):
            return
        for other in tree.snapshots.values():
            od = other.disk(disk.device)
            if other.id != snap.id and od and real(od.file_path) == real(frozen):
                return          # another snapshot holds exactly this state
        if not self.store.owns(frozen):
            return              # never rewrite or delete an image the collection did not create
        tops = [t for t in self.all_tops(tree) if real(t) != real(frozen)]
        above = uppers(self.view, frozen, tops)
        if len(above) != 1:
            return              # nothing above (garbage, collected later) or a layer shared by branches
        upper = above[0]
        info = self.view.info(frozen)
        base, base_fmt = info.backing_file, info.backing_format
        if free_bytes(os.path.dirname(upper)) < (info.actual_size or 0) + OVERLAY_RESERVE:
            raise NovaError('not enough free space next to %s to merge %s into it (%d MiB needed); nothing was lost'
                            % (upper, frozen, (info.actual_size or 0) // 2 ** 20))
        vm_chain = []
        if self.domain.is_active:
            live_disk = DomainXML(self.domain.xml()).disk(disk.device)
            if live_disk is not None and live_disk.source_file:
                vm_chain = [real(p) for p in self.view.chain(live_disk.source_file)]
        if vm_chain and real(upper) == vm_chain[0]:
            self.domain.block_pull(disk.device, base, self.job_timeout)
        elif real(upper) in vm_chain:
            # a frozen image the running guest reads through: merge it down into ours instead
            self.domain.block_commit(disk.device, upper, frozen, self.job_timeout)
            for other in tree.snapshots.values():
                od = other.disk(disk.device)
                if od and real(od.file_path) == real(upper):
                    od.file_path = frozen
                    od.backing_file = base
        else:
            self.qemu_img.rebase(upper, base, base_fmt)
        self.view.invalidate()

    # -- garbage ------------------------------------------------------------------------------
    def _gc(self, tree):
        """Delete images and files of the store that nothing needs any more."""
        self.view.invalidate()
        needed = needed_files(self.view, self.all_tops(tree))
        memory = set(real(s.memory_file) for s in tree.snapshots.values() if s.memory_file)
        roots = [os.path.join(self.store.root, 'snapshots'), self.store.active_dir] + self.store.tier_dirs()
        for root in roots:
            if not os.path.isdir(root):
                continue
            for entry in os.listdir(root):
                path = os.path.join(root, entry)
                if os.path.isdir(path):
                    snap_alive = entry in tree.snapshots
                    for name in os.listdir(path):
                        f = os.path.join(path, name)
                        if name.endswith('.qcow2') and real(f) not in needed:
                            os.unlink(f)
                        elif not snap_alive and not name.endswith('.qcow2') and real(f) not in memory:
                            os.unlink(f)
                    if not os.listdir(path):
                        os.rmdir(path)
                elif entry.endswith('.qcow2') and real(path) not in needed:
                    os.unlink(path)
