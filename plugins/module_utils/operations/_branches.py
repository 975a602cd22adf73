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

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._chains import real
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._luks import drop_encryption
from ansible_collections.nova.snapshots.plugins.module_utils.model._crash import (
    MERGE_RECORDED,
    MERGE_WRITTEN,
    SWITCH_LEFT,
    SWITCH_PLANNED,
    SWITCH_UP,
    crash_point,
)
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Conflict, Failed, NotFound, NovaError, Refused, SnapshotNotFound
from ansible_collections.nova.snapshots.plugins.module_utils.operations._merge import (
    CarryPlan,
    MergeConflict,
    apply_merge,
    plan_carry,
    plan_merge as merge_plan,
)
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import Branch, SnapshotDisk, VmSnapshot, new_id, validate_name
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._snapshot_xml import SnapshotXML
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import MEMORY_MARGIN, require_free
from ansible_collections.nova.snapshots.plugins.module_utils.model._plan import Plan
from ansible_collections.nova.snapshots.plugins.module_utils.operations._gc import collect_garbage
from ansible_collections.nova.snapshots.plugins.module_utils.operations._revert import (
    check_intact,
    mark_current_in_libvirt,
    new_overlays,
    overlay_paths,
    prepare_start,
    require_persistent,
)
from ansible_collections.nova.snapshots.plugins.module_utils.model._tree import render_dot, render_text
from ansible_collections.nova.snapshots.plugins.module_utils.operations._branch_keys import (
    BranchKeys,
    carry_refusal,
    chain_encrypted,
    layer_encrypted,
)

DEFAULT_BRANCH = 'main'


class _Merging(object):
    """What plan_merge works out before anything changes."""

    def __init__(self, source_tip, target_tip, ancestor, target_branch, active):
        self.source_tip = source_tip
        self.target_tip = target_tip
        self.ancestor = ancestor
        self.target_branch = target_branch
        self.active = active
        self.carried = {}       # device -> CarryPlan of the target's own writes since its tip
        # encryption (_merge_keys): the qemu-img that reads and writes the layers (keyed when any is
        # LUKS), where clear scratch may go, the Crypt, the devices whose result chain is encrypted
        self.qemu_img, self.tmpdir, self.crypt, self.encrypted = None, None, None, set()


class TreeManager(object):
    """Branch operations over one domain's SnapshotManager (`m`)."""

    def __init__(self, manager):
        self.m = manager

    # -- queries ------------------------------------------------------------------------------
    def branches(self, tree):
        """[{name, base, head, active}] with snapshot names (what `nova snapshot branches` lists)."""
        out = []
        for name, b in sorted(tree.branches.items()):
            out.append(dict(name=name, base=self.m.name_of(tree, b.base), head=self.m.name_of(tree, b.head),
                            tip=self.m.name_of(tree, b.tip), active=name == tree.active_branch,
                            vm_state=None if name == tree.active_branch else (b.vm_state or 'shutoff'),
                            saved_ram=bool(b.memory_file)))
        return out

    def _require_overlays(self, tree):
        internal = sorted(s.name for s in tree.snapshots.values() if s.snapshot_type == 'internal')
        if internal:
            raise Refused("branches need external, memory or disk_only snapshots; domain '%s' has internal "
                          "snapshots (%s), which live inside the disk images every branch would share"
                          % (self.m.domain.name, ', '.join(internal)))

    def _ensure_active_branch(self, tree):
        """The VM's line before any branch existed becomes branch `main`."""
        if tree.active_branch is None:
            tree.branches.setdefault(DEFAULT_BRANCH, Branch(DEFAULT_BRANCH, head=tree.current, created_at=int(time.time())))
            tree.active_branch = DEFAULT_BRANCH

    # -- branched -----------------------------------------------------------------------------
    def plan_branch(self, tree, name, start, switch=False, key_file=None):
        validate_name(name, 'branch')
        snap = tree.by_name(start)
        if snap is None:
            raise SnapshotNotFound(self.m.domain.name, start)
        self._require_overlays(tree)
        existing = tree.branches.get(name)
        if existing is not None and existing.base != snap.id and name != tree.active_branch:
            raise Conflict("branch '%s' of domain '%s' already exists, starting at '%s' (asked '%s')"
                           % (name, self.m.domain.name, self.m.name_of(tree, existing.base), start))
        switch_plan = self.plan_switch(tree, name, start=snap, key_file=key_file) if switch else None
        if existing is not None:
            return switch_plan or Plan(False, snapshot=None)
        actions = ["create branch %s of %s at snapshot %s" % (name, self.m.domain.name, start)]
        actions += switch_plan.actions if switch_plan else []

        def apply():
            self._ensure_active_branch(tree)
            tree.branches[name] = Branch(name, base=snap.id, created_at=int(time.time()))
            self.m.store.save(tree)
            if switch and switch_plan.apply is not None:
                switch_plan.apply()
        return Plan(True, actions, before=dict(branches=sorted(tree.branches), active=tree.active_branch),
                    after=dict(branches=sorted(set(tree.branches) | set([name])),
                               active=name if switch else (tree.active_branch or DEFAULT_BRANCH)), apply=apply)

    # -- switched -----------------------------------------------------------------------------
    def plan_switch(self, tree, name, start=None, key_file=None):
        """Make `name` the VM's line: a branch, or a snapshot (a branch of that name starts there).

        On encrypted chains it needs key_file (checked here, before anything changes): the RAM of a
        branch left running on LUKS disks is saved sealed, the target's overlays are LUKS on an
        encrypted snapshot, and sealed RAM is decrypted into tmpfs to be restored."""
        keys = BranchKeys(self.m, key_file)
        branch = tree.branches.get(name)
        if branch is None and start is None:
            start = tree.by_name(name)
            if start is None:
                raise NotFound("domain '%s' has no branch or snapshot named '%s'" % (self.m.domain.name, name))
            validate_name(name, 'branch')
        if tree.active_branch == name and not (branch and branch.activating):
            return Plan(False, before=dict(active=name), after=dict(active=name))
        self._require_overlays(tree)
        require_persistent(self.m, 'a branch switch')
        state = self.m.domain.state
        if state in ('running', 'paused'):
            need = self.m.domain_xml().memory_bytes * MEMORY_MARGIN
            require_free(self.m.store.root, need, 'the RAM of the branch left behind')
        tip = start if branch is None else tree.snapshots.get(branch.tip)
        keys.require('a branch switch to %s' % name, keys.switch_reasons(tree, state in ('running', 'paused'), branch, tip))
        leaving = tree.active_branch or DEFAULT_BRANCH
        how = 'resume its overlays%s' % (' and RAM' if branch and branch.memory_file else '') if branch and branch.disks \
            else 'start new overlays on snapshot %s' % (start.name if start else self.m.name_of(tree, branch.tip))
        actions = ['switch %s from branch %s (keeping its disks%s) to branch %s (%s)'
                   % (self.m.domain.name, leaving, ' and RAM' if state in ('running', 'paused') else '', name, how)]

        def apply():
            if name not in tree.branches:
                self._ensure_active_branch(tree)
                tree.branches[name] = Branch(name, base=start.id, created_at=int(time.time()))
            self._switch(tree, name, keys)
        return Plan(True, actions, before=dict(active=tree.active_branch or DEFAULT_BRANCH),
                    after=dict(active=name), apply=apply)

    def _switch(self, tree, name, keys):
        self._ensure_active_branch(tree)
        leaving = tree.branches[tree.active_branch]
        target = tree.branches[name]
        if not target.activating:
            # 1. Write down where everything goes before touching anything.
            state = self.m.domain.state
            persistent = self.m.domain_xml(inactive=True)
            leaving.disks = dict((d.target, d.source_file) for d in persistent.disks if d.writable)
            leaving.vm_state = state if state in ('running', 'paused') else 'shutoff'
            leaving.memory_file = self.m.store.branch_memory_path(leaving.name) if leaving.vm_state != 'shutoff' else None
            tip = tree.snapshots.get(target.tip)
            if target.disks:
                target.activating = dict(target.disks)
            elif tip is not None:
                check_intact(self.m, tip, with_ram=True)
                target.activating = overlay_paths(self.m, tip)
            else:
                raise Refused("branch '%s' has no snapshot to start from" % name)
            self.m.store.save(tree)
        crash_point(SWITCH_PLANNED)

        if not self._runs_on(target.activating):
            memory = None
            try:
                # 2. Work out how the target comes up before touching the VM: its definition and its start
                # (sealed or compressed RAM decoded into a private directory, removed once QEMU has read it).
                persistent = self.m.domain_xml(inactive=True)
                if target.disks:
                    encrypted = any(chain_encrypted(self.m, p) for p in target.disks.values())
                    luks = self._luks(keys, encrypted)
                    for dev, path in target.disks.items():
                        disk = persistent.disk(dev)
                        disk.point_at(path)
                        if luks is not None:
                            luks.describe_disk(disk)      # libvirt cannot find a backing layer's secret itself
                        else:
                            drop_encryption(disk)         # left from an encrypted branch
                    memory = keys.open_memory(target.memory_file, encrypted)
                    start = prepare_start(self.m, target.disks, memory.path, target.vm_state or 'shutoff', luks=luks)
                else:
                    tip = tree.snapshots[target.tip]
                    luks = self._luks(keys, keys.snapshot_encrypted(tip))
                    new_overlays(self.m, tip, persistent, target.activating, luks=luks)
                    with_ram = tip.memory_file and tip.vm_state in ('running', 'paused')
                    memory = keys.open_memory(tip.memory_file if with_ram else None, tip.encrypted)
                    start = prepare_start(self.m, target.activating, memory.path, tip.vm_state if with_ram else 'shutoff',
                                          luks=luks)
                # 3. Put the branch being left to rest: its RAM to a file (the VM stops; sealed when its
                # disks are encrypted), or just stop.
                old_xml = self.m.domain.xml(inactive=True)
                if self.m.domain.is_active:
                    if leaving.memory_file:
                        self.m.store.make_dir(os.path.dirname(leaving.memory_file))
                        keys.save_ram(leaving.memory_file, seal=keys.active_encrypted())
                    else:
                        self.m.domain.destroy()
                elif leaving.memory_file and not os.path.exists(leaving.memory_file):
                    # a run killed after the VM's RAM was saved into tmpfs, before it was sealed
                    if not keys.recover_ram(leaving.memory_file):
                        leaving.memory_file, leaving.vm_state = None, 'shutoff'
                        self.m.store.save(tree)
                crash_point(SWITCH_LEFT)
                # 4. Bring the target up: resumed as it was left, or new on its base snapshot.
                try:
                    self.m.hypervisor.define(persistent.to_string())
                    if start is not None:
                        start()
                except NovaError as e:
                    raise Failed("switching domain '%s' to branch '%s' failed: %s. %s"
                                 % (self.m.domain.name, name, e.msg, self._back_to(tree, leaving, target, old_xml, keys)))
            finally:
                if memory is not None:
                    memory.close()
            crash_point(SWITCH_UP)

        # 5. The target is the VM's line now; its saved RAM is spent.
        if target.memory_file and os.path.exists(target.memory_file):
            os.unlink(target.memory_file)
        target.disks, target.memory_file, target.vm_state, target.activating = {}, None, None, {}
        tree.active_branch = name
        tree.current = target.tip
        tree.last_revert = None
        self.m.store.save(tree)
        if target.tip in tree.snapshots:
            mark_current_in_libvirt(self.m, tree, tree.snapshots[target.tip])
        collect_garbage(self.m, tree)

    @staticmethod
    def _luks(keys, encrypted):
        """The Crypt that makes and describes a branch's LUKS overlays (its secret given to libvirt), or None."""
        if not encrypted:
            return None
        if keys.crypt is None:          # planning refuses this first; a chain encrypted since then
            raise Refused('the disks of this switch are encrypted: give key_file; nothing was changed')
        keys.crypt.activate()
        return keys.crypt

    def _back_to(self, tree, leaving, target, old_xml, keys):
        """A switch failed after the VM was stopped: the branch left comes back exactly as it was
        (its definition, and its RAM from the file just saved). The sentence that says so."""
        try:
            self.m.domain.destroy()
            self.m.hypervisor.define(old_xml)
            if leaving.memory_file and os.path.exists(leaving.memory_file):
                memory = keys.open_memory(leaving.memory_file, False)      # the file just saved (sealed or not)
                try:
                    self.m.hypervisor.restore(memory.path, self.m.hypervisor.save_image_xml(memory.path),
                                              paused=leaving.vm_state == 'paused')
                finally:
                    memory.close()
                os.unlink(leaving.memory_file)
        except NovaError as e:
            return ('Bringing branch %s back failed too (%s); its disks are %s and its RAM is in %s'
                    % (leaving.name, e.msg, leaving.disks, leaving.memory_file))
        leaving.disks, leaving.memory_file, leaving.vm_state = {}, None, None
        target.activating = {}
        self.m.store.save(tree)
        return 'Branch %s is back as it was (disks and RAM); nothing was lost.' % leaving.name

    def _runs_on(self, disks):
        """Whether the defined VM already uses exactly these images (a switch got that far)."""
        persistent = self.m.domain_xml(inactive=True)
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
            raise Refused("branch '%s' is the active branch of domain '%s'; switch to another branch first"
                          % (name, self.m.domain.name))
        files = sorted(branch.disks.values()) + ([branch.memory_file] if branch.memory_file else [])
        actions = ['delete branch %s of %s%s' % (name, self.m.domain.name, ' and ' + ', '.join(files) if files else '')]

        def apply():
            del tree.branches[name]
            self.m.store.save(tree)
            if branch.memory_file and os.path.exists(branch.memory_file):
                os.unlink(branch.memory_file)
            collect_garbage(self.m, tree)
        return Plan(True, actions, before=dict(branch=name), after={}, apply=apply)

    # -- merged -------------------------------------------------------------------------------
    def plan_merge(self, tree, source, target, conflict='fail', result_name=None, key_file=None):
        """Merge the newest snapshot of `source` into branch `target` (see the module's notes).

        Encrypted layers are read and written with the key (key_file, checked here); a result on an
        encrypted side is a LUKS overlay, and a merge that would leave encrypted data under the
        target's clear overlay is refused."""
        self._require_overlays(tree)
        source_tip = self._tip_of(tree, source, 'source')
        target_branch = tree.branches.get(target)
        target_tip = self._tip_of(tree, target, 'target')
        if source_tip.id in self._ancestry(tree, target_tip.id):
            return Plan(False, before=dict(target=target, head=target_tip.name), after=dict(target=target, head=target_tip.name),
                        extra=dict(conflicts=[]))
        ancestor = tree.snapshots.get(tree.common_ancestor(source_tip.id, target_tip.id))
        if ancestor is None:
            raise Refused("'%s' and '%s' share no snapshot; there is nothing to merge against" % (source, target))
        active = target == (tree.active_branch or DEFAULT_BRANCH)
        if active and self.m.domain.state != 'shutoff':
            raise Refused("merging into the active branch '%s' needs the VM shut off (its overlays are rebased); "
                          "domain '%s' is %s" % (target, self.m.domain.name, self.m.domain.state))
        mg = _Merging(source_tip, target_tip, ancestor, target_branch, active)
        before = dict(target=target, head=target_tip.name)
        tops = self._own_tops(tree, target, active)
        self._merge_keys(mg, BranchKeys(self.m, key_file), tops, target, ancestor.id == target_tip.id)
        if ancestor.id == target_tip.id:
            conflicts = self._plan_carry(mg, tops, target, conflict, ancestor)
            actions = ['fast-forward %s from %s to %s' % (target, target_tip.name, source_tip.name)]
            actions += self._carry_actions(mg)
            return Plan(True, actions, before=before, after=dict(target=target, head=source_tip.name),
                        apply=lambda: self._fast_forward(tree, target, mg), extra=dict(conflicts=conflicts))
        name = result_name or 'merge-%s-into-%s' % (source, target)
        validate_name(name)
        if tree.by_name(name) is not None:
            raise Conflict("a snapshot named '%s' already exists; give the merge result another result_name" % name)
        plans, conflicts = {}, []
        for disk in target_tip.disk_files:
            theirs, base = source_tip.disk(disk.device), ancestor.disk(disk.device)
            if theirs is None or base is None:
                continue
            plans[disk.device] = merge_plan(mg.qemu_img, base.file_path, theirs.file_path, disk.file_path,
                                            conflict, device=disk.device, tmpdir=mg.tmpdir)
            conflicts += ['%s: bytes %d-%d changed on both sides' % (disk.device, off, off + length - 1)
                          for off, length in plans[disk.device].conflicts]
        for line in self._plan_carry(mg, tops, target, conflict, ancestor):
            if line not in conflicts:
                conflicts.append(line)
        actions = ['merge %s into %s against %s (%s), as snapshot %s'
                   % (source_tip.name, target, ancestor.name,
                      ', '.join('%s: %d ranges from the source' % (d, len(p.copy)) for d, p in sorted(plans.items())), name)]
        actions += self._carry_actions(mg)
        return Plan(True, actions, before=before, after=dict(target=target, head=name),
                    apply=lambda: self._three_way(tree, target, name, mg, plans), extra=dict(conflicts=conflicts))

    def _merge_keys(self, mg, keys, tops, target, fast_forward):
        """Work out what of the merge is encrypted (into mg): its result is, per disk, when the source
        is (a fast-forward's result is the source's chain) or, for a new merge snapshot, either side
        is. Refused without key_file when any layer it reads or writes is LUKS, and when the target's
        own clear overlay would end up on encrypted images."""
        reasons, refusal = [], None
        for disk in mg.target_tip.disk_files:
            dev, theirs, top = disk.device, mg.source_tip.disk(disk.device), tops.get(disk.device)
            src = theirs is not None and chain_encrypted(self.m, theirs.file_path)
            tgt = chain_encrypted(self.m, disk.file_path)
            top_luks = top is not None and layer_encrypted(self.m, top)
            reasons += ['%s: the %s layers are encrypted' % (dev, side) for side, enc in (('source', src), ('target', tgt)) if enc]
            if top_luks and not tgt:
                reasons.append('%s: the overlay %s of the target is LUKS' % (dev, top))
            if src or (tgt and not fast_forward):
                mg.encrypted.add(dev)
                if top is not None and not top_luks and refusal is None:
                    refusal = carry_refusal(target, top, mg.target_tip.name)
        mg.crypt = keys.require("a merge of '%s' into '%s'" % (mg.source_tip.name, target), reasons)
        if refusal is not None:
            raise refusal
        mg.qemu_img, mg.tmpdir = keys.merge_images(mg.crypt is not None)

    def _tip_of(self, tree, name, what):
        branch = tree.branches.get(name)
        if branch is None and name == DEFAULT_BRANCH and tree.active_branch is None:
            tip = tree.snapshots.get(tree.current)
        elif branch is not None:
            tip = tree.snapshots.get(branch.tip)
        else:
            tip = tree.by_name(name)
            if tip is None:
                raise NotFound("domain '%s' has no branch or snapshot named '%s' (%s)" % (self.m.domain.name, name, what))
        if tip is None:
            raise Refused("%s '%s' has no snapshot yet" % (what, name))
        return tip

    def _ancestry(self, tree, snap_id):
        """Every snapshot `snap_id` contains: its parents and, through merges, their other parents."""
        seen, todo = set(), [snap_id]
        while todo:
            sid = todo.pop()
            if sid in seen or sid not in tree.snapshots:
                continue
            seen.add(sid)
            snap = tree.snapshots[sid]
            todo += [snap.parent_snapshot] + list(snap.merge_parents)
        return seen

    def _ensure_branch(self, tree, name, tip):
        self._ensure_active_branch(tree)
        if name not in tree.branches:
            tree.branches[name] = Branch(name, base=tip.id, created_at=int(time.time()))
        return tree.branches[name]

    def _own_tops(self, tree, target, active):
        """The target branch's own images on its tip (its writes since), per device: the VM's
        disks for the active branch, the overlays it was left on for another one."""
        if active:
            disks = dict((d.target, d.source_file) for d in self.m.domain_xml(inactive=True).disks if d.writable)
        else:
            branch = tree.branches.get(target)
            disks = dict(branch.disks) if branch is not None else {}
        return dict((dev, path) for dev, path in disks.items()
                    if path and self.m.store.owns(path) and os.path.exists(path))

    def _plan_carry(self, mg, tops, target, conflict, ancestor):
        """Plan carrying the target's own writes over (mg.carried); returns the conflicts they take part in.

        Those writes are the target's side of the merge as much as its snapshots are: a cluster
        they and the source both changed is a conflict, and a source block in a cluster they
        allocated would be shadowed by the rebased top unless written into it."""
        conflicts = []
        for disk in mg.target_tip.disk_files:
            top, theirs, base = tops.get(disk.device), mg.source_tip.disk(disk.device), ancestor.disk(disk.device)
            if top is None:
                continue
            if theirs is None or base is None:      # nothing of the source to merge on this disk
                mg.carried[disk.device] = CarryPlan(disk.device, top, [], [])
                continue
            try:
                carry = plan_carry(mg.qemu_img, base.file_path, theirs.file_path, disk.file_path, top, conflict,
                                   device=disk.device, tmpdir=mg.tmpdir)
            except MergeConflict as e:
                raise Conflict("%s (writes of branch '%s' since its tip snapshot '%s', not yet in a snapshot)"
                               % (e.msg, target, mg.target_tip.name), device=e.device, conflicts=e.conflicts)
            mg.carried[disk.device] = carry
            conflicts += ['%s: bytes %d-%d changed on both sides' % (disk.device, off, off + length - 1)
                          for off, length in carry.conflicts]
        return conflicts

    @staticmethod
    def _carry_actions(mg):
        return ['keep the writes of %s since %s on top (%s: %d ranges of the source written into it)'
                % (mg.target_branch.name if mg.target_branch else 'the target', mg.target_tip.name, dev, len(c.write))
                for dev, c in sorted(mg.carried.items()) if c.write]

    def _carry_over(self, mg, new_tip):
        """Put the branch's own uncommitted writes on top of its new tip: a header-only rebase of its
        top, then the source's bytes the top would shadow (planned in mg.carried) written into it."""
        for d in new_tip.disk_files:
            carry = mg.carried.get(d.device)
            if carry is None:
                continue
            mg.qemu_img.rebase(carry.top, d.file_path, d.format, unsafe=True)
            apply_merge(mg.qemu_img, mg.source_tip.disk(d.device).file_path, carry.top, carry.write)
        if mg.active and mg.crypt is not None and mg.carried:
            # the VM's own overlays now sit on other layers, some LUKS: libvirt needs the chain spelled
            # out with each encrypted layer's secret (it cannot find one in an image header)
            persistent = self.m.domain_xml(inactive=True)
            for dev in mg.carried:
                disk = persistent.disk(dev)
                if disk is not None and disk.source_file:
                    mg.crypt.describe_disk(disk)
            self.m.hypervisor.define(persistent.to_string())

    def _fast_forward(self, tree, target, mg):
        if mg.crypt is not None:
            mg.crypt.activate()
        branch = self._ensure_branch(tree, target, mg.target_tip)
        self._carry_over(mg, mg.source_tip)
        branch.head = mg.source_tip.id
        if mg.active:
            tree.current = mg.source_tip.id
            mark_current_in_libvirt(self.m, tree, mg.source_tip)
        self.m.store.save(tree)
        collect_garbage(self.m, tree)

    def _three_way(self, tree, target, name, mg, plans):
        if mg.crypt is not None:
            mg.crypt.activate()
        branch = self._ensure_branch(tree, target, mg.target_tip)
        snap_id = new_id()
        self.m.store.make_dir(self.m.store.snapshot_dir(snap_id))
        disks = []
        for disk in mg.target_tip.disk_files:
            path = self.m.store.overlay_path(snap_id, disk.device)
            if disk.device in mg.encrypted:       # written with the key: the source's bytes go in encrypted
                mg.crypt.create_overlay(path, disk.file_path, disk.format)
            else:
                self.m.qemu_img.create_overlay(path, disk.file_path, disk.format)
            os.chmod(path, 0o600)
            if disk.device in plans:
                apply_merge(mg.qemu_img, mg.source_tip.disk(disk.device).file_path, path, plans[disk.device].copy)
            disks.append(SnapshotDisk(disk.device, path, 'qcow2', disk.file_path))
        crash_point(MERGE_WRITTEN)
        snap = VmSnapshot(snap_id, self.m.domain.name, name, 'disk_only', int(time.time()), 'shutoff', disks,
                          description='merge of %s into %s' % (mg.source_tip.name, target),
                          parent_snapshot=mg.target_tip.id, merge_parents=[mg.source_tip.id], encrypted=bool(mg.encrypted))
        self.m.store.save_snapshot_xml(snap_id, self._snapshot_xml(snap, mg.target_tip.name))
        tree.add(snap, make_current=mg.active)
        self._carry_over(mg, snap)
        branch.head = snap_id
        self.m.store.save(tree)
        crash_point(MERGE_RECORDED)
        # libvirt learns of it last: a run that dies before this redefines it from the store.
        self.m.domain.redefine_snapshot(self.m.store.snapshot_xml(snap_id), current=mg.active)
        collect_garbage(self.m, tree)

    def _snapshot_xml(self, snap, parent_name):
        """libvirt's record of a snapshot the collection made itself (a merge result)."""
        sx = SnapshotXML()
        sx.name, sx.description, sx.state, sx.creation_time = snap.name, snap.description, snap.vm_state, snap.creation_time
        sx.parent = parent_name
        sx.memory_mode = 'no'
        for d in snap.disk_files:
            sx.add_disk(d.device, 'external', source_file=d.file_path)
        sx.root.append(self.m.domain_xml(inactive=True).root)
        return sx.to_string()

    # -- the whole tree, as modules return it -------------------------------------------------
    def tree_view(self, tree):
        current = tree.snapshots.get(tree.current)
        return dict(tree=nested_nodes(tree), branches=self.branches(tree), current=current.name if current else None,
                    tree_text=render_text(tree), tree_dot=render_dot(tree))


def nested_nodes(tree):
    """Roots first, each node {name, type, created_at, children}; built without recursion (deep chains)."""
    nodes = dict((s.id, dict(name=s.name, type=s.snapshot_type, created_at=s.created_at, children=[]))
                 for s in tree.snapshots.values())
    roots = []
    for snap in tree.ordered():
        parent = nodes.get(snap.parent_snapshot)
        (parent['children'] if parent is not None else roots).append(nodes[snap.id])
    return roots
