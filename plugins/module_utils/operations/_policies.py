# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""The policy tasks of nova_policy: store, remove, and enforce the policies stored or given.

Storing compares the parsed policy with the stored one, so a re-run is unchanged; enforcing is the
Enforcer's (_enforce.py). Check mode plans only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._policy_store import PolicyStore
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NotFound, Refused
from ansible_collections.nova.snapshots.plugins.module_utils.model._policy import POLICY_KEYS, has_policy_keys, parse_now, parse_policy
from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import POLICY_SPEC
from ansible_collections.nova.snapshots.plugins.module_utils.operations._enforce import Enforcer


def empty_result(**kwargs):
    result = dict(changed=False, policy=None, policies=[], taken=[], pruned=[], kept=[], consolidated=[],
                  skipped=[], dequeued=[], missing=[], diff=dict(before={}, after={}))
    result.update(kwargs)
    return result


def given_policy(p, name):
    raw = dict((k, p[k]) for k in POLICY_KEYS)
    raw['domains'] = p['domains'] if p['domains'] is not None else ([p['domain']] if p['domain'] else None)
    return parse_policy(raw, name)


def store_policy(check_mode, store, policy):
    before = store.read_raw(policy['name'])
    changed = before != policy
    if changed and not check_mode:
        store.save(policy)
    return empty_result(changed=changed, policy=policy, policies=[policy],
                        diff=dict(before=before or {}, after=policy))


def remove_policy(check_mode, store, name):
    before = store.read_raw(name)
    exists = name in store.names()
    if exists and not check_mode:
        store.remove(name)
    return empty_result(changed=exists, policy=before, policies=[before] if before else [],
                        diff=dict(before=before or {}, after={}))


def policies_to_enforce(p, store):
    """[policy] to enforce and the domains to narrow them to (None: every domain each selects)."""
    if has_policy_keys(p):
        policy = given_policy(p, p['name'] or 'default')
        if not policy['domains']:
            raise Refused('state=enforced with policy keys needs domain or domains (the domains to enforce them on)')
        return [policy], None
    only = p['domains'] if p['domains'] is not None else ([p['domain']] if p['domain'] else None)
    names = [p['name']] if p['name'] else store.names()
    policies = []
    for name in names:
        policy = store.load(name)
        if policy is None:
            raise NotFound("no policy named '%s' is stored in %s; store it first with state=present, or give "
                           "the policy keys in the task" % (name, store.dir), policy=name)
        policies.append(policy)
    return policies, only


def policy_task(p, hypervisor, qemu_img, check_mode, warn):
    """nova_policy's result for the task's parameters `p`."""
    store = PolicyStore(p['storage_dir'])
    if p['state'] == 'present':
        return store_policy(check_mode, store, given_policy(p, p['name'] or 'default'))
    if p['state'] == 'absent':
        return remove_policy(check_mode, store, p['name'] or 'default')
    now = parse_now(p['now'])
    policies, only = policies_to_enforce(p, store)
    enforcer = Enforcer(hypervisor, p['storage_dir'], qemu_img, store, now, lock_timeout=p['lock_timeout'],
                        check_mode=check_mode, create_options=dict((k, p.get(k)) for k in POLICY_SPEC if k in p))
    result = enforcer.enforce(policies, only_domains=only)
    for m in result['missing']:
        warn("policy '%s' names domain '%s', which is not defined on this host" % (m['policy'], m['domain']))
    return empty_result(policy=policies[0] if len(policies) == 1 else None, policies=policies, **result)
