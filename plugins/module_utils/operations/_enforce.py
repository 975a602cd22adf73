# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Enforcing a policy on a host: take what is due, prune by retention, consolidate.

Per domain the work is planned first from what libvirt and the store show (no lock, nothing
written), then applied through the snapshot engine, which plans each step again under the domain's
lock: a snapshot with nova_snapshot's create, each prune with its safe delete (children kept), and
chains with the consolidation core. So a re-run at the same `now` finds nothing due and nothing to
prune, and check mode reports exactly the plan.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fnmatch

from ansible_collections.nova.snapshots.plugins.module_utils.operations._consolidate import plan_consolidate
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Failed, NovaError
from ansible_collections.nova.snapshots.plugins.module_utils.model._policy import (
    CATEGORY,
    TAG_POLICY,
    condition_purposes,
    conditions_kept,
    due_periods,
    main_purpose,
    policy_tags,
    read_tags,
    render_name,
)
from ansible_collections.nova.snapshots.plugins.module_utils.model._retention import Record, plan_retention
from ansible_collections.nova.snapshots.plugins.module_utils.operations._create import plan_create
from ansible_collections.nova.snapshots.plugins.module_utils.operations._delete import plan_delete
from ansible_collections.nova.snapshots.plugins.module_utils.operations._snapshots import SnapshotManager


def match_domains(patterns, names):
    """Domains on the host that the policy's names or globs select, and literal names not found."""
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    missing = [p for p in patterns if not any(c in p for c in '*?[') and p not in names]
    return chosen, missing


def own_records(tree, policy_name):
    """(records for the planner, newest time per period, newest time, newest shutdown snapshot's creation).

    Only snapshots tagged with the policy are looked at: the planner never touches the others."""
    records, newest, last, last_shutdown = [], {}, None, None
    mark = TAG_POLICY + policy_name
    for snap in tree.snapshots.values():      # any order: the planner sorts
        if mark not in snap.tags:
            continue
        _policies, periods, purposes, at, protected = read_tags(snap.tags, snap.creation_time)
        owned = snap.category == CATEGORY and snap.origin == 'nova'
        records.append(Record(snap.name, at, periods, owned=owned, protected=protected))
        for period in periods:
            newest[period] = max(newest.get(period, at), at)
        last = at if last is None else max(last, at)
        if 'shutdown' in purposes:
            last_shutdown = max(last_shutdown or 0, snap.creation_time or 0)
    return records, newest, last, last_shutdown


def change_percent(manager):
    """Share (%) of a disk's virtual size allocated in its active overlay (written since that
    overlay was started by the last snapshot); the highest over the domain's disks. None when no
    disk runs on an overlay (an internal-snapshot history keeps everything in one image)."""
    worst = None
    for disk in manager.domain_xml().disks:
        if not disk.writable or not disk.source_file:
            continue
        info = manager.view.info(disk.source_file)
        if not info.backing_file or not info.virtual_size:
            continue
        extents = manager.qemu_img.map(disk.source_file, info.format or 'qcow2')
        written = sum(e.length for e in extents if e.depth == 0 and e.data)
        pct = 100.0 * written / info.virtual_size
        worst = pct if worst is None else max(worst, pct)
    return worst


class DomainPlan(object):
    def __init__(self, policy, manager):
        self.policy = policy
        self.manager = manager
        self.domain = manager.domain.name
        self.take = None            # dict(name, purposes, reason, tags) or None
        self.skipped = None         # why nothing could be taken
        self.retention = None
        self.dequeue = False        # the shutdown queue file is handled by this run
        self.before = []


class Enforcer(object):
    """Enforce policies on one host. `now` is an aware datetime."""

    def __init__(self, hypervisor, storage_dir, qemu_img, policy_store, now, lock_timeout=60, check_mode=False,
                 create_options=None):
        self.hypervisor = hypervisor
        self.create_options = create_options or {}     # key_file, encrypt, memory_compression of the snapshots taken
        self.storage_dir = storage_dir
        self.qemu_img = qemu_img
        self.policies = policy_store
        self.now = now
        self.epoch = now.timestamp()
        self.lock_timeout = lock_timeout
        self.check_mode = check_mode
        self._managers = {}

    def manager(self, domain):
        if domain not in self._managers:
            self._managers[domain] = SnapshotManager(self.hypervisor, domain, self.storage_dir, self.qemu_img,
                                                     lock_timeout=self.lock_timeout)
        return self._managers[domain]

    # -- planning -----------------------------------------------------------------------------
    def plan(self, policy, domain):
        manager = self.manager(domain)
        tree = manager.load(write=False)[0]
        plan = DomainPlan(policy, manager)
        records, newest, last, last_shutdown = own_records(tree, policy['name'])
        plan.before = [r.key for r in records if r.owned]
        periods = due_periods(policy, self.now, newest)
        queued = self.policies.queued_since(domain) if policy['conditions'].get('on_shutdown') else None
        if queued is not None and last_shutdown is not None and last_shutdown >= queued:
            queued, plan.dequeue = None, True      # taken already; a run died before removing the file
        state = manager.domain.state
        pct = change_percent(manager) if policy['conditions'].get('on_change_percent') is not None else None
        conditions = condition_purposes(policy, self.epoch, last, state == 'running', queued is not None, pct)
        conditions = conditions_kept(policy, periods, conditions)
        new = []
        if periods or conditions:
            purposes = [p for p, _slot in periods] + [c for c, _why in conditions]
            reason = '; '.join(['%s due since %s' % (p, slot.isoformat()) for p, slot in periods]
                               + [why for _c, why in conditions])
            if policy['snapshot_type'] == 'memory' and state not in ('running', 'paused'):
                plan.skipped = 'a memory snapshot needs a running or paused VM and %s is %s (%s)' % (domain, state, reason)
            else:
                name = render_name(policy['naming'], domain, main_purpose([p for p, _s in periods],
                                                                          [c for c, _w in conditions]),
                                   self.now, [s.name for s in tree.snapshots.values()])
                tags = policy_tags(policy['name'], [p for p, _s in periods], [c for c, _w in conditions], self.epoch)
                plan.take = dict(name=name, purposes=purposes, reason=reason, tags=tags)
                # the engine's own checks (name clash, mixing internal and external, space) before anything changes
                plan_create(manager, tree, name, policy['snapshot_type'], tags=tags, category=CATEGORY,
                            description=self._description(policy, purposes), **self.create_options)
                new = [Record(name, self.epoch, [p for p, _s in periods], owned=True)]
                plan.dequeue = plan.dequeue or queued is not None
        plan.retention = plan_retention(records + new, policy['retain'], self.epoch)
        return plan

    @staticmethod
    def _description(policy, purposes):
        return "taken by nova.snapshots policy '%s' (%s)" % (policy['name'], ', '.join(purposes))

    # -- applying -----------------------------------------------------------------------------
    def apply(self, plan, result):
        """Carry `plan` out (unless in check mode) and add what happened to `result`."""
        policy, manager, domain = plan.policy, plan.manager, plan.domain
        changed = False
        if plan.take:
            take = plan.take
            if not self.check_mode:
                done = manager.run(False, lambda tree: plan_create(
                    manager, tree, take['name'], policy['snapshot_type'], tags=take['tags'], category=CATEGORY,
                    description=self._description(policy, take['purposes']), **self.create_options))
                changed = changed or done['changed']
            else:
                changed = True
            result['taken'].append(dict(domain=domain, policy=policy['name'], name=take['name'],
                                        purposes=take['purposes'], reason=take['reason']))
        if plan.skipped:
            result['skipped'].append(dict(domain=domain, policy=policy['name'], reason=plan.skipped))
        key_file = self.create_options.get('key_file')
        for rec, rule in plan.retention.prune:
            if not self.check_mode:
                manager.run(False, lambda tree, name=rec.key: plan_delete(manager, tree, name, children='keep',
                                                                          key_file=key_file))
            changed = True
            result['pruned'].append(dict(domain=domain, policy=policy['name'], name=rec.key, rule=rule))
        for rec, rules in plan.retention.keep:
            result['kept'].append(dict(domain=domain, policy=policy['name'], name=rec.key, rules=rules))
        if plan.dequeue:
            changed = True
            result['_dequeue'].add(domain)
        if policy['auto_consolidate']:
            done = manager.run(self.check_mode, lambda tree: plan_consolidate(
                manager, tree, max_chain_length=policy['max_chain_length'],
                key_file=self.create_options.get('key_file')))
            if done['changed']:
                changed = True
                result['consolidated'].append(dict(domain=domain, policy=policy['name'],
                                                   merged=done.get('merged', []), actions=done.get('actions', [])))
        after = [r.key for r, _rules in plan.retention.keep]
        result['diff']['before'].setdefault(policy['name'], {})[domain] = plan.before
        result['diff']['after'].setdefault(policy['name'], {})[domain] = after
        return changed

    def enforce(self, policies, only_domains=None):
        """Enforce each policy on the domains it selects (narrowed to `only_domains` when given).

        Every policy and domain is planned before it is applied; a domain that fails does not stop
        the others, and the failures are reported together at the end.
        """
        result = dict(taken=[], pruned=[], kept=[], consolidated=[], skipped=[], missing=[], changed=False,
                      diff=dict(before={}, after={}), _dequeue=set())
        names = self.hypervisor.domain_names()
        failures = []
        for policy in policies:
            chosen, missing = match_domains(policy['domains'], names)
            if only_domains is not None:
                chosen = [d for d in chosen if any(fnmatch.fnmatchcase(d, p) for p in only_domains)]
            result['missing'].extend(dict(policy=policy['name'], domain=m) for m in missing)
            for domain in chosen:
                try:
                    if self.apply(self.plan(policy, domain), result):
                        result['changed'] = True
                except NovaError as e:
                    failures.append("policy '%s' on %s: %s" % (policy['name'], domain, e.msg))
        queues = sorted(result.pop('_dequeue'))
        if not self.check_mode:
            for domain in queues:
                self.policies.dequeue(domain)
        result['dequeued'] = queues
        if failures:
            raise Failed('%d of the policy runs failed: %s' % (len(failures), ' | '.join(failures)), **result)
        return result
