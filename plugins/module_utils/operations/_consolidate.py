# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Chain consolidation: make a VM's backing chains short again without losing a restore point.

Two steps, per disk, only when the chain is longer than the maximum or wastes more space than
the threshold allows:

1. Layers that are nobody's restore point ("anonymous": not a snapshot's image, not a branch's,
   not used by another domain, not shared by several chains) are merged away, each run of them
   into a neighbour: *pull* copies them up into the image above (which keeps exactly what it
   showed), *commit* copies the image above down into the run's lowest layer, which then takes its
   place (snapshot records and the domain follow it). Live: block pull / block commit with pivot.
   Offline: qemu-img rebase / commit.
2. If the VM's chain is still too long, it is made of restore points. The VM's own image then pulls
   in the layers nearest to it, so the VM reads through at most max_chain_length images, while every
   snapshot keeps its own images and stays restorable. That costs the space of the pulled data.

Every write preserves what each restore point shows: a pull rewrites an image into an equal one, and
a commit only writes into an anonymous layer, below an image that still covers it. An interrupted
run (crash, full disk) therefore leaves every chain showing what it showed, and running again
finishes the work.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.nova.snapshots.plugins.module_utils.operations._chain_health import describe_chain, describe_disks
from ansible_collections.nova.snapshots.plugins.module_utils.operations._optimize import plan_optimize
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._chains import needed_files, real
from ansible_collections.nova.snapshots.plugins.module_utils.model._crash import CONSOLIDATE_MERGED, crash_point
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._domain_xml import DomainXML
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Conflict, NovaError, Refused
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import OVERLAY_RESERVE, disk_usage, free_bytes, require_free
from ansible_collections.nova.snapshots.plugins.module_utils.model._plan import Plan
from ansible_collections.nova.snapshots.plugins.module_utils.operations._checksums import refresh_checksums
from ansible_collections.nova.snapshots.plugins.module_utils.operations._gc import collect_garbage
from ansible_collections.nova.snapshots.plugins.module_utils.operations._jobs import Step, block, concurrent, rounds, run_steps
from ansible_collections.nova.snapshots.plugins.module_utils.operations._tiers import move_layer, plan_moves
from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import (
    describe_persistent, encrypted_parts, keeps_encrypted, open_chains)

METHODS = ('commit', 'pull', 'auto')


class Merge(object):
    """Merge the anonymous layers `run` (top-most first) with the image `upper` above them."""

    def __init__(self, device, upper, run, below, method, upper_is_top):
        self.device, self.upper, self.run, self.below = device, upper, run, below
        self.method, self.upper_is_top = method, upper_is_top

    @property
    def into(self):
        return self.upper if self.method == 'pull' else self.run[-1]

    @property
    def copied(self):
        """The images whose data is copied."""
        return self.run if self.method == 'pull' else [self.upper] + self.run[:-1]

    def describe(self):
        return dict(disk=self.device, method=self.method, layers=list(self.run), into=self.into,
                    replaces=None if self.method == 'pull' else self.upper)


class Shorten(object):
    """Pull the restore-point layers nearest to the VM's image into it; `base` stays below it."""

    def __init__(self, device, top, layers, base):
        self.device, self.top, self.layers, self.base = device, top, layers, base
        self.method = 'pull'

    @property
    def copied(self):
        return self.layers

    def describe(self):
        return dict(disk=self.device, method='pull', layers=list(self.layers), into=self.top, replaces=None,
                    kept_for_snapshots=True)


class ChainContext(object):
    """What may not be rewritten or removed, and who sits on what, across every chain that matters."""

    def __init__(self, manager, tree):
        self.m = manager
        self.view = manager.view
        self.pinned = {}
        for snap in tree.snapshots.values():
            for d in snap.disk_files:
                self.pinned[real(d.file_path)] = "snapshot '%s'" % snap.name
        for branch in tree.branches.values():
            for path in list(branch.disks.values()) + list(branch.activating.values()):
                self.pinned.setdefault(real(path), "branch '%s'" % branch.name)
        self.uppers = {}
        for top in manager.all_tops(tree):
            for path in self.view.chain(top):
                below = self.view.backing(path)
                if below:
                    self.uppers.setdefault(real(below), set()).add(real(path))
        for path, above in self.uppers.items():
            if len(above) > 1:
                self.pinned.setdefault(path, 'several chains')
        self._others = None
        self.kept = {}      # disk -> why runs were left as they are (encrypted data kept encrypted)

    def other_domains(self):
        """Images in other domains' chains (a template base shared by many VMs, ...): never written."""
        if self._others is None:
            self._others = {}
            hv = self.m.hypervisor
            for name in hv.domain_names():
                if name == self.m.domain.name:
                    continue
                try:
                    dom = hv.domain(name)
                    xmls = [dom.xml(inactive=True)] + ([dom.xml()] if dom.is_active else [])
                except NovaError:
                    continue    # undefined meanwhile
                for xml in xmls:
                    for disk in DomainXML(xml).disks:
                        if disk.source_file and os.path.isfile(disk.source_file):
                            try:
                                for path in self.view.chain(disk.source_file):
                                    self._others.setdefault(real(path), "domain '%s'" % name)
                            except NovaError:
                                pass    # that domain's broken chain is its own problem
        return self._others

    def holder(self, path):
        """Who needs `path` unchanged (None: an anonymous layer)."""
        key = real(path)
        if key in self.pinned:
            return self.pinned[key]
        if self.view.info(path).snapshots:
            return 'internal snapshots inside it'
        return self.other_domains().get(key)


def plan_consolidate(manager, tree, disks=None, max_chain_length=10, threshold=80, method='auto', key_file=None):
    """A Plan that shortens the chains of `disks` (default: every writable disk).

    Encrypted chains are read and written with `key_file` (QEMU has the secret for block jobs
    already); a merge never copies a LUKS layer's data into a clear image (_choose)."""
    crypt = open_chains(manager, key_file, tree, 'consolidation')
    if method not in METHODS:
        raise Refused('method must be one of %s, not %r' % (', '.join(METHODS), method))
    if max_chain_length < 1:
        raise Refused('max_chain_length must be at least 1, not %d' % max_chain_length)
    if threshold < 0:
        raise Refused('consolidate_threshold must not be negative, not %s' % threshold)
    m = manager
    running = m.domain.is_active
    dom = m.domain_xml()
    targets = m.target_disks(dom, disks)
    ctx = ChainContext(m, tree)
    ops, reports = [], []
    for disk in [d for d in dom.disks if d.target in targets and d.source_file]:
        chain = m.view.chain(disk.source_file)
        report = dict(disk=disk.target, length=len(chain), reason=None)
        reports.append(report)
        if len(chain) > max_chain_length:
            report['reason'] = 'chain of %d images is longer than %d' % (len(chain), max_chain_length)
            shape = None      # too long either way: no need to map the whole chain
        else:
            shape = describe_chain(m.view, m.qemu_img, disk.source_file, {})
            report['overhead_percent'] = shape['overhead_percent']
        if shape is None:
            pass
        elif shape['overhead_percent'] > threshold:
            report['reason'] = 'chain uses %.1f%% more space than a flattened image (threshold %s%%)' % (
                shape['overhead_percent'], threshold)
        else:
            continue
        merges, chain_after = _merges(ctx, disk.target, chain, method, running)
        ops += merges
        report['reason'] += ''.join('; %s' % why for why in ctx.kept.pop(disk.target, []))
        if len(chain_after) > max_chain_length:
            keep_from = len(chain_after) + 1 - max_chain_length
            if ctx.holder(chain_after[0]):
                report['reason'] += '; %s cannot be rewritten (%s)' % (chain_after[0], ctx.holder(chain_after[0]))
            elif not keeps_encrypted(m.view, chain_after[1:keep_from], chain_after[0]):
                report['reason'] += ('; the encrypted layers below %s are not pulled into it: it is not encrypted, and '
                                     'encrypted data is never written in clear' % chain_after[0])
            else:
                base = chain_after[keep_from] if keep_from < len(chain_after) else None
                ops.append(Shorten(disk.target, chain_after[0], chain_after[1:keep_from], base))
    _check_space(m, ops)
    actions = ['%s %s into %s (%s)' % (op.method, ', '.join(op.copied), getattr(op, 'into', None) or op.top, op.device)
               for op in ops]
    before = dict((r['disk'], r['length']) for r in reports)
    after = dict(before)
    for op in ops:
        after[op.device] -= len(op.run) if isinstance(op, Merge) else len(op.layers)
    extra = dict(merged=[op.describe() for op in ops], chains=reports, left_behind=[])

    def apply():
        if crypt is not None and encrypted_parts(m, tree, dom):
            crypt.activate()        # the secret the described chains name (gone after a libvirtd restart)
        files = needed_files(m.view, m.all_tops(tree))
        used_before = _usage(files)
        for batch in rounds(ops):      # the disks' jobs at once, each disk's in order
            run_steps([_step(m, tree, op, running) for op in batch], parallel=concurrent(m))
        describe_persistent(m, crypt)
        collect_garbage(m, tree)
        needed_now = needed_files(m.view, m.all_tops(tree))
        extra['space_saved'] = used_before - _usage(files | needed_now)
        extra['left_behind'] = sorted(f for f in files if os.path.exists(f) and not m.store.owns(f)
                                      and f not in needed_now)
        return None
    return Plan(bool(ops), actions, before=dict(chain_length=before), after=dict(chain_length=after),
                apply=apply, extra=extra)


def _merges(ctx, device, chain, method, running):
    """The merges of the anonymous runs of `chain`, and the chain they leave."""
    merges, after, i = [], [chain[0]], 1
    while i < len(chain):
        if ctx.holder(chain[i]):
            after.append(chain[i])
            i += 1
            continue
        j = i
        while j + 1 < len(chain) and not ctx.holder(chain[j + 1]):
            j += 1
        upper, run = chain[i - 1], chain[i:j + 1]
        below = chain[j + 1] if j + 1 < len(chain) else None
        how = _choose(ctx, device, method, upper, run, i - 1 == 0, running)
        if how is None:
            after += run
        else:
            merges.append(Merge(device, upper, run, below, how, i - 1 == 0))
            if how == 'commit':
                after[-1] = run[-1]
        i = j + 1
    return merges, after


def _choose(ctx, device, method, upper, run, upper_is_top, running):
    """pull or commit for one run, or None when neither may be done.

    Encrypted data is never written in clear: a pull that would copy a LUKS layer into a clear
    `upper`, or a commit into a clear lowest layer, is not chosen; asked for by `method`, refused."""
    if ctx.view.info(upper).snapshots:
        return None          # internal snapshots inside `upper` would not survive either
    can_pull = upper_is_top or not running      # libvirt pulls only into the active image
    pull_ok, commit_ok = keeps_encrypted(ctx.view, run, upper), keeps_encrypted(ctx.view, [upper] + run[:-1], run[-1])
    if method != 'auto' and not (pull_ok if method == 'pull' and can_pull else commit_ok):
        raise Refused('%s: a %s of %s would write encrypted data into the unencrypted %s (encrypted data is '
                      'never written in clear); use method auto; nothing was changed'
                      % (device, method if can_pull or method == 'commit' else 'commit', ', '.join(run),
                         upper if method == 'pull' and can_pull else run[-1]))
    if not (commit_ok or (pull_ok and can_pull)):
        ctx.kept.setdefault(device, []).append(
            '%s not merged: %s would write encrypted data into an unencrypted image' % (
                ', '.join(run), 'a commit' if not can_pull else 'a pull or a commit'))
        return None
    if method == 'pull' and can_pull:
        return 'pull'
    if method == 'commit' or not can_pull or not pull_ok:
        return 'commit'
    if not commit_ok:
        return 'pull'
    up = sum(ctx.view.info(p).actual_size or 0 for p in run)
    down = sum(ctx.view.info(p).actual_size or 0 for p in [upper] + run[:-1])
    return 'commit' if down < up else 'pull'


def _check_space(m, ops):
    """Every destination's filesystem must hold the data copied into it.

    The layers' sizes on disk bound that data; only when they do not fit is each layer measured
    exactly with `qemu-img measure` (it leaves out what a layer's file holds but does not use).
    """
    need = {}
    for op in ops:
        dest = op.into if isinstance(op, Merge) else op.top
        dev = os.stat(os.path.dirname(dest)).st_dev
        need.setdefault(dev, [os.path.dirname(dest), []])
        need[dev][1].append(op)
    for directory, dev_ops in need.values():
        free = free_bytes(directory)
        copied = [p for op in dev_ops for p in op.copied]
        reserve = OVERLAY_RESERVE * len(dev_ops)
        if free >= sum(m.view.info(p).actual_size or 0 for p in copied) + reserve:
            continue
        wanted = sum(m.qemu_img.measure_layer(p) for p in copied) + reserve
        require_free(directory, wanted, 'consolidating')


def _usage(files):
    """Bytes the files take on disk (deleted ones: none)."""
    return sum(disk_usage(f) or 0 for f in files)


def _step(m, tree, op, running):
    """One op as a Step: live, a block job started now and recorded when it ends (the jobs of
    several disks then run at once); offline, qemu-img work done at once."""
    device = op.device
    if not running:
        return Step(device, lambda: _apply_offline(m, tree, op))
    if isinstance(op, Shorten) or op.method == 'pull':
        top = op.top if isinstance(op, Shorten) else op.upper
        base = op.base if isinstance(op, Shorten) else op.below
        return Step(device, lambda: block(m, device).start_pull(base), lambda: _pulled(m, tree, top))
    target = op.run[-1]
    if op.upper_is_top:
        def after():
            _repoint_definition(m, device, op.upper, target)
            _committed(m, tree, op, target)
        return Step(device, lambda: block(m, device).start_commit_active(target), after)
    return Step(device, lambda: block(m, device).start_commit(op.upper, target), lambda: _committed(m, tree, op, target))


def _pulled(m, tree, top):
    m.view.invalidate()
    refresh_checksums(m, tree, {top: top}, 'consolidation pulled layers into it')
    crash_point(CONSOLIDATE_MERGED)


def _committed(m, tree, op, target):
    crash_point(CONSOLIDATE_MERGED)
    # restore points that named the replaced image now name the image that took its place
    tree.repoint_image(op.upper, target, new_backing=m.view.backing(target) if os.path.exists(target) else None, key=real)
    refresh_checksums(m, tree, {op.upper: target}, 'consolidation committed layers into it')
    m.store.save(tree)
    m.view.invalidate()


def _apply_offline(m, tree, op):
    device = op.device
    if isinstance(op, Shorten) or op.method == 'pull':
        top = op.top if isinstance(op, Shorten) else op.upper
        base = op.base if isinstance(op, Shorten) else op.below
        fmt = m.view.info(base).format if base else None
        m.qemu_img.rebase(top, base, fmt)
        _pulled(m, tree, top)
        return None
    target = op.run[-1]
    m.qemu_img.commit(op.upper, target, rate=m.io_limit)
    if op.upper_is_top:
        _repoint_definition(m, device, op.upper, target)
    else:
        for above in m.view.chain(_vm_top(m, device)):
            if real(m.view.backing(above) or '') == real(op.upper):
                m.qemu_img.rebase(above, target, m.view.info(target).format, unsafe=True)
    _committed(m, tree, op, target)
    return None


def _vm_top(m, device):
    return m.domain_xml().disk(device).source_file


def _repoint_definition(m, device, old, new):
    """Point the persistent definition's disk at `new` where it still names `old`."""
    persistent = m.domain_xml(inactive=True)
    disk = persistent.disk(device)
    if disk is not None and disk.source_file and real(disk.source_file) == real(old):
        disk.point_at(new)
        m.hypervisor.define(persistent.to_string())


def settle_block_jobs(manager, disks, check_mode):
    """Finish (or cancel, for an active commit waiting for its pivot) block jobs a killed run left.

    While such a job runs, QEMU keeps the chain's images from being read consistently, so nothing
    can be planned until it is settled."""
    if not manager.domain.is_active:
        return []
    dom = manager.domain_xml()
    targets = manager.target_disks(dom, disks)
    busy = sorted(d for d in targets if manager.domain.block(d, manager.job_timeout).job())
    if busy and check_mode:
        raise Conflict('a block job left by an interrupted run is still on %s of %s; run without check mode to settle it'
                       % (', '.join(busy), manager.domain.name))
    if busy:
        with manager.store.lock(operation='settling left-over block jobs'):
            for disk in busy:
                manager.domain.block(disk, manager.job_timeout).settle()
    return busy


def plan_chains(manager, tree, disks=None, max_chain_length=10, threshold=80, method='auto',
                active_storage=None, archive_storage=None, key_file=None):
    """Consolidation, then placement on the storage tiers given (planned again after merging)."""
    plan = plan_consolidate(manager, tree, disks, max_chain_length, threshold, method, key_file)
    plan.extra['moved'] = []
    if not (active_storage or archive_storage):
        return plan
    crypt = open_chains(manager, key_file, tree, 'a move between storage tiers')
    moves, skipped = plan_moves(manager, tree, active_storage, archive_storage)
    plan.extra['not_moved'] = skipped
    plan.actions += ['move %s to %s (%s)' % move for move in moves]
    merge = plan.apply if plan.changed else None

    def apply():
        if merge:
            merge()
        for path, tier, _why in plan_moves(manager, tree, active_storage, archive_storage)[0]:
            plan.extra['moved'].append(dict(file=path, to=move_layer(manager, tree, path, tier)))
        describe_persistent(manager, crypt)
        collect_garbage(manager, tree)
    plan.changed = plan.changed or bool(moves)
    plan.apply = apply
    return plan


def chain_change(manager, check_mode, state, disks=None, max_chain_length=10, threshold=80, method='auto',
                 active_storage=None, archive_storage=None, compression='none', sparsify=True, key_file=None):
    """nova_chain's consolidated/optimized task: planned, applied unless in check mode, then reported."""
    if state == 'optimized':
        result = manager.run(check_mode, lambda tree: plan_optimize(manager, tree, disks, compression, sparsify, key_file))
    else:
        settle_block_jobs(manager, disks, check_mode)
        result = manager.run(check_mode, lambda tree: plan_chains(
            manager, tree, disks, max_chain_length, threshold, method, active_storage, archive_storage, key_file))
    result.pop('snapshot', None)
    result.pop('adopted', None)
    result.setdefault('space_saved', 0)
    manager.view.invalidate()
    result['disks'] = describe_disks(manager, manager.load(write=False)[0], disks)
    result['problems'] = []
    return result
