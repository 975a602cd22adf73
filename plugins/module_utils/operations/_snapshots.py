# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""The engine's centre: one domain's collaborators, the reconciled tree, and running a plan.

SnapshotManager holds what every operation works with (the libvirt domain, the store, the
qemu-img runner and a chain view) and answers questions about the VM's images. The operations
themselves are functions over it, one file each: _create, _revert, _delete, _gc, _branches,
_consolidate, _optimize, _tiers, _enforce. Unit tests build it with fakes (from_parts).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._chains import ChainView, real
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._domain_xml import DomainXML
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._snapshot_xml import SnapshotXML
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._store import Store
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import disk_usage
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._trace import current
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NotFound, NovaError, Refused, SnapshotNotFound
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import SnapshotDisk, VmSnapshot, adopted_id
from ansible_collections.nova.snapshots.plugins.module_utils.operations._ownership import check_ownership


class SnapshotManager(object):
    """One domain's collaborators: `domain` (libvirt adapter), `store`, `qemu_img`, `view`."""

    def __init__(self, hypervisor, domain_name, storage_dir, qemu_img, lock_timeout=60, job_timeout=600):
        domain = hypervisor.domain(domain_name)
        store = Store(storage_dir, domain_name, owner=hypervisor.qemu_owner(), lock_timeout=lock_timeout, uuid=domain.uuid)
        self.use_parts(hypervisor, domain, store, qemu_img, job_timeout)

    @classmethod
    def from_parts(cls, hypervisor, domain, store, qemu_img, job_timeout=600):
        """A manager over given collaborators (the unit tests' fakes, or adapters already open)."""
        manager = cls.__new__(cls)
        manager.use_parts(hypervisor, domain, store, qemu_img, job_timeout)
        return manager

    def use_parts(self, hypervisor, domain, store, qemu_img, job_timeout):
        """Work with these collaborators (the constructor opens them from a connection and paths)."""
        self.hypervisor = hypervisor
        self.domain = domain
        self.store = store
        self.qemu_img = qemu_img
        self.view = ChainView(qemu_img)
        self.job_timeout = job_timeout
        self.io_limit = None        # bytes/s for work that copies data (block jobs, qemu-img); the module sets it
        self.parallel_disks = False     # the block jobs of several disks at once (operations/_jobs.py concurrent)
        self.unsynced = []

    def run(self, check_mode, planner):
        """Plan with planner(tree) -> Plan; apply it unless in check mode; the module's result.

        The first plan is made without the lock and without writing anything, so refused input
        and no-op runs leave no trace. A change is planned again under the lock (another run may
        have changed the tree meanwhile), then applied.
        """
        tree, adopted = self.load(write=False)
        with current().phase('plan'):
            plan = planner(tree)
        if check_mode or not (plan.changed or adopted or tree.deleting or self.unsynced):
            snapshot = plan.snapshot if not plan.changed else plan.before
        else:
            with self.store.lock(operation=plan.actions[0] if plan.actions else 'reconciling the store with libvirt'):
                tree, adopted = self.load()
                with current().phase('plan'):
                    plan = planner(tree)
                with current().phase('apply', '; '.join(plan.actions) or 'reconciling the store', change=True):
                    snapshot = plan.apply() if plan.changed else plan.snapshot
        result = dict(changed=plan.changed, actions=plan.actions, snapshot=snapshot, adopted=adopted,
                      diff=dict(before=plan.before or {}, after=plan.after or {}))
        result.update(plan.extra)
        return result

    def domain_xml(self, inactive=False):
        """The live definition of a running VM (the persistent one when off, or with inactive=True);
        disks on storage volumes resolve to the volume's path."""
        return self.parse_domain(self.domain.xml(inactive=inactive or not self.domain.is_active))

    def parse_domain(self, xml):
        return DomainXML(xml, volume_path=self.volume_path)

    def volume_path(self, pool, volume):
        if self.hypervisor is None:
            raise Refused('storage volume %s/%s cannot be resolved without a libvirt connection' % (pool, volume))
        return self.hypervisor.volume_path(pool, volume)

    def load(self, write=True):
        """The tree, reconciled with libvirt: snapshots made outside the collection are adopted,
        deletions a crash interrupted are finished. Returns (tree, adopted names)."""
        check_ownership(self.domain, self.store, write)     # a migrated VM's store or disks: refused
        tree = self.store.load()
        in_libvirt = set(self.domain.snapshot_names())
        for name in list(tree.deleting):
            if tree.by_name(name) is None:
                if name in in_libvirt and write:
                    self.domain.delete_snapshot(name, metadata_only=True)
                in_libvirt.discard(name)
                tree.deleting.remove(name)
        foreign = {}        # only the snapshots the store does not know are read whole (adopted below)
        for name in sorted(in_libvirt):
            if tree.by_name(name) is None and name not in tree.deleting:
                try:
                    foreign[name] = self.domain.snapshot_xml(name)
                except SnapshotNotFound:        # deleted (by virsh, say) since it was listed
                    in_libvirt.discard(name)
        pending = [SnapshotXML(xml) for xml in foreign.values()]
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
                sx.parent = self.name_of(tree, snap.parent_snapshot)
                self.domain.redefine_snapshot(sx.to_string(), current=snap.id == tree.current)
        if adopted:
            current = tree.by_name(self.domain.current_snapshot_name() or '')
            tree.current = current.id if current else tree.current
            if write:
                for name in adopted:
                    self.store.save_snapshot_xml(tree.by_name(name).id, foreign[name])
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
                    disks.append(SnapshotDisk(d.name, path, dom_disks[d.name].driver_type or 'qcow2', self.backing(path)))
        else:
            for d in sx.disks:
                if d.snapshot == 'external' and d.source_file and os.path.exists(d.source_file):
                    info = self.view.info(d.source_file)
                    if info.backing_file:
                        disks.append(SnapshotDisk(d.name, info.backing_file, info.backing_format or 'raw',
                                                  self.backing(info.backing_file)))
        return VmSnapshot(adopted_id(sx.creation_time, sx.name), self.domain.name, sx.name, stype, sx.creation_time, sx.state,
                          disks, description=sx.description, parent_snapshot=parent.id if parent else None,
                          memory_file=sx.memory_file if sx.memory_mode == 'external' else None,
                          origin='adopted')

    def backing(self, path):
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
        tops = [d.source_file for d in self.domain_xml(inactive=True).disks if d.source_file]
        if self.domain.is_active:
            tops += [d.source_file for d in self.domain_xml().disks if d.source_file]
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
        return set(real(p) for d in self.domain_xml().disks if d.source_file for p in d.live_chain())

    def target_disks(self, dom, disks):
        """The targets of `disks` (default: every writable disk of `dom`), checked."""
        return self.select_disks(dom, [d for d in dom.disks if d.writable], disks)

    def select_disks(self, dom, writable, disks):
        known = dict((d.target, d) for d in dom.disks)
        if not disks:
            return set(d.target for d in writable)
        missing = [d for d in disks if d not in known]
        if missing:
            raise NotFound("domain '%s' has no disk %s; its disks are %s"
                           % (self.domain.name, ', '.join(missing), ', '.join(sorted(known))))
        unwritable = ['%s (%s)' % (d, known[d].why_not_writable()) for d in disks if not known[d].writable]
        if unwritable:
            raise Refused('disk %s cannot be snapshotted' % ', '.join(unwritable))
        return set(disks)

    def snapshot_disks(self, dom, disks):
        """The disks a new snapshot covers: those named in `disks`, else every writable disk the
        domain does not exclude (snapshot='no'). Refused when that leaves none, saying why per disk."""
        default = [d for d in dom.disks if d.writable and not d.excluded]
        targets = self.select_disks(dom, default, disks)
        if not targets:
            why = ['%s: %s' % (d.target, 'marked snapshot=\'no\' in the domain XML (name it in disks to include it)'
                               if d.writable else d.why_not_writable()) for d in dom.disks]
            raise Refused("domain '%s' has no disk a snapshot would cover (%s); nothing was changed"
                          % (self.domain.name, '; '.join(why) or 'it has no disks'))
        return targets

    def current_name(self, tree):
        cur = tree.snapshots.get(tree.current)
        return cur.name if cur else None

    def name_of(self, tree, snap_id):
        s = tree.snapshots.get(snap_id)
        return s.name if s else None
