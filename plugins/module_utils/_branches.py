# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Branches: named, writable lines of work on top of snapshots, switched without losing anything.

A branch's state is its overlays (writes since its tip snapshot) and, when the VM was running as
it was left, its RAM in a memory file (like a managed save). Switching saves the branch left
behind that way and brings the other one up: resumed from its own overlays and RAM, or, for a
branch never used, started on new overlays on its base snapshot. Each switch writes its plan to
the tree before acting, so a switch killed part-way is finished by the next run.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time

from ansible_collections.nova.snapshots.plugins.module_utils._chains import real
from ansible_collections.nova.snapshots.plugins.module_utils._crash import crash_point
from ansible_collections.nova.snapshots.plugins.module_utils._domain_xml import DomainXML
from ansible_collections.nova.snapshots.plugins.module_utils._errors import NovaError, SnapshotNotFound
from ansible_collections.nova.snapshots.plugins.module_utils._model import Branch, validate_name
from ansible_collections.nova.snapshots.plugins.module_utils._snapshots import MEMORY_MARGIN, Plan, SnapshotManager, free_bytes

DEFAULT_BRANCH = 'main'


class TreeManager(SnapshotManager):
    """Branch operations on top of the snapshot engine."""

    # -- queries ------------------------------------------------------------------------------
    def branches(self, tree):
        """[{name, base, head, active}] with snapshot names (the seed's `nova snapshot branches`)."""
        out = []
        for name, b in sorted(tree.branches.items()):
            out.append(dict(name=name, base=self._name(tree, b.base), head=self._name(tree, b.head),
                            tip=self._name(tree, b.tip), active=name == tree.active_branch,
                            vm_state=None if name == tree.active_branch else (b.vm_state or 'shutoff'),
                            saved_ram=bool(b.memory_file)))
        return out

    def _require_overlays(self, tree):
        internal = sorted(s.name for s in tree.snapshots.values() if s.snapshot_type == 'internal')
        if internal:
            raise NovaError("branches need external, memory or disk_only snapshots; domain '%s' has internal "
                            "snapshots (%s), which live inside the disk images every branch would share"
                            % (self.domain.name, ', '.join(internal)))

    def _ensure_active_branch(self, tree):
        """The VM's line before any branch existed becomes branch `main`."""
        if tree.active_branch is None:
            tree.branches.setdefault(DEFAULT_BRANCH, Branch(DEFAULT_BRANCH, head=tree.current, created_at=int(time.time())))
            tree.active_branch = DEFAULT_BRANCH

    # -- branched -----------------------------------------------------------------------------
    def plan_branch(self, tree, name, start, switch=False):
        validate_name(name, 'branch')
        snap = tree.by_name(start)
        if snap is None:
            raise SnapshotNotFound(self.domain.name, start)
        self._require_overlays(tree)
        existing = tree.branches.get(name)
        if existing is not None and existing.base != snap.id and name != tree.active_branch:
            raise NovaError("branch '%s' of domain '%s' already exists, starting at '%s' (asked '%s')"
                            % (name, self.domain.name, self._name(tree, existing.base), start))
        switch_plan = self.plan_switch(tree, name, start=snap) if switch else None
        if existing is not None:
            return switch_plan or Plan(False, snapshot=None)
        actions = ["create branch %s of %s at snapshot %s" % (name, self.domain.name, start)]
        actions += switch_plan.actions if switch_plan else []

        def apply():
            self._ensure_active_branch(tree)
            tree.branches[name] = Branch(name, base=snap.id, created_at=int(time.time()))
            self.store.save(tree)
            if switch:
                self._switch(tree, name)
        return Plan(True, actions, before=dict(branches=sorted(tree.branches), active=tree.active_branch),
                    after=dict(branches=sorted(set(tree.branches) | set([name])),
                               active=name if switch else (tree.active_branch or DEFAULT_BRANCH)), apply=apply)

    # -- switched -----------------------------------------------------------------------------
    def plan_switch(self, tree, name, start=None):
        """Make `name` the VM's line: a branch, or a snapshot (a branch of that name starts there)."""
        branch = tree.branches.get(name)
        if branch is None and start is None:
            start = tree.by_name(name)
            if start is None:
                raise NovaError("domain '%s' has no branch or snapshot named '%s'" % (self.domain.name, name))
            validate_name(name, 'branch')
        if tree.active_branch == name and not (branch and branch.activating):
            return Plan(False, before=dict(active=name), after=dict(active=name))
        self._require_overlays(tree)
        state = self.domain.state
        if state in ('running', 'paused'):
            need = DomainXML(self.domain.xml()).memory_bytes * MEMORY_MARGIN
            if free_bytes(self.store.root) < need:
                raise NovaError('not enough free space in %s to keep the RAM of the branch left behind (%d MiB '
                                'needed); nothing was changed' % (self.store.root, need // 2 ** 20))
        leaving = tree.active_branch or DEFAULT_BRANCH
        how = 'resume its overlays%s' % (' and RAM' if branch and branch.memory_file else '') if branch and branch.disks \
            else 'start new overlays on snapshot %s' % (start.name if start else self._name(tree, branch.tip))
        actions = ['switch %s from branch %s (keeping its disks%s) to branch %s (%s)'
                   % (self.domain.name, leaving, ' and RAM' if state in ('running', 'paused') else '', name, how)]

        def apply():
            if name not in tree.branches:
                self._ensure_active_branch(tree)
                tree.branches[name] = Branch(name, base=start.id, created_at=int(time.time()))
            self._switch(tree, name)
        return Plan(True, actions, before=dict(active=tree.active_branch or DEFAULT_BRANCH),
                    after=dict(active=name), apply=apply)

    def _switch(self, tree, name):
        self._ensure_active_branch(tree)
        leaving = tree.branches[tree.active_branch]
        target = tree.branches[name]
        if not target.activating:
            # 1. Write down where everything goes before touching anything.
            state = self.domain.state
            persistent = DomainXML(self.domain.xml(inactive=True))
            leaving.disks = dict((d.target, d.source_file) for d in persistent.disks if d.writable)
            leaving.vm_state = state if state in ('running', 'paused') else 'shutoff'
            leaving.memory_file = self.store.branch_memory_path(leaving.name) if leaving.vm_state != 'shutoff' else None
            tip = tree.snapshots.get(target.tip)
            if target.disks:
                target.activating = dict(target.disks)
            elif tip is not None:
                self._check_intact(tip, with_ram=True)
                target.activating = self._overlay_paths(tip)
            else:
                raise NovaError("branch '%s' has no snapshot to start from" % name)
            self.store.save(tree)
        crash_point('switch-planned')

        if not self._runs_on(target.activating):
            # 2. Put the branch being left to rest: its RAM to a file (the VM stops), or just stop.
            if self.domain.is_active:
                if leaving.memory_file:
                    self.store.make_dir(os.path.dirname(leaving.memory_file))
                    self.domain.save(leaving.memory_file)
                    os.chmod(leaving.memory_file, 0o600)
                else:
                    self.domain.destroy()
            crash_point('switch-left')
            # 3. Bring the target up: resumed as it was left, or new on its base snapshot.
            persistent = DomainXML(self.domain.xml(inactive=True))
            if target.disks:
                for dev, path in target.disks.items():
                    persistent.disk(dev).point_at(path)
                self.hypervisor.define(persistent.to_string())
                self._bring_up(target.disks, target.memory_file, target.vm_state or 'shutoff')
            else:
                tip = tree.snapshots[target.tip]
                self._new_overlays(tip, persistent, target.activating)
                self.hypervisor.define(persistent.to_string())
                with_ram = tip.memory_file and tip.vm_state in ('running', 'paused')
                self._bring_up(target.activating, tip.memory_file, tip.vm_state if with_ram else 'shutoff')
            crash_point('switch-up')

        # 4. The target is the VM's line now; its saved RAM is spent.
        if target.memory_file and os.path.exists(target.memory_file):
            os.unlink(target.memory_file)
        target.disks, target.memory_file, target.vm_state, target.activating = {}, None, None, {}
        tree.active_branch = name
        tree.current = target.tip
        tree.last_revert = None
        self.store.save(tree)
        if target.tip in tree.snapshots:
            self._mark_current_in_libvirt(tree, tree.snapshots[target.tip])
        self._gc(tree)

    def _runs_on(self, disks):
        """Whether the defined VM already uses exactly these images (a switch got that far)."""
        persistent = DomainXML(self.domain.xml(inactive=True))
        for dev, path in disks.items():
            disk = persistent.disk(dev)
            if disk is None or not disk.source_file or real(disk.source_file) != real(path):
                return False
        return True

    # -- absent -------------------------------------------------------------------------------
    def plan_delete_branch(self, tree, name):
        branch = tree.branches.get(name)
        if branch is None:
            return Plan(False)
        if name == tree.active_branch:
            raise NovaError("branch '%s' is the active branch of domain '%s'; switch to another branch first"
                            % (name, self.domain.name))
        files = sorted(branch.disks.values()) + ([branch.memory_file] if branch.memory_file else [])
        actions = ['delete branch %s of %s%s' % (name, self.domain.name, ' and ' + ', '.join(files) if files else '')]

        def apply():
            del tree.branches[name]
            self.store.save(tree)
            if branch.memory_file and os.path.exists(branch.memory_file):
                os.unlink(branch.memory_file)
            self._gc(tree)
        return Plan(True, actions, before=dict(branch=name), after={}, apply=apply)
