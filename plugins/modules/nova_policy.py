#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: nova_policy
short_description: Snapshot policies for libvirt domains - schedules, retention and conditions
version_added: 1.0.0
description:
  - Stores a snapshot policy on the hypervisor (O(state=present)), removes it (O(state=absent)), or
    enforces it (O(state=enforced)) - takes the one snapshot that is due at O(now), prunes the
    policy's snapshots by retention, and consolidates chains when O(auto_consolidate) is set.
  - One snapshot is taken per run and domain, tagged with every period that is due
    (C(nova-policy:<name>), C(period:daily), C(period:hourly), ..., C(policy-at:<UTC time>)), category C(policy).
  - Retention follows sanoid - for each period with a count N the newest N snapshots of that period
    are kept and every older one is pruned, however young (a first run's catch-up snapshot included).
    A snapshot is kept if any of its periods keeps it. Only snapshots this policy took are ever pruned;
    snapshots taken by hand, by another policy, or tagged C(protected) never are. Pruning is
    M(nova.snapshots.nova_snapshot)'s safe delete (children are kept, no data another snapshot needs is lost).
  - A policy is validated completely before anything changes; an error names the key that is wrong.
  - See the collection's C(docs/policy.md) for the rules with a worked example and the shutdown queue.
options:
  name:
    description:
      - Name of the policy; a host may store several. It names the file
        C(<storage_dir>/policies/<name>.json) and the tag C(nova-policy:<name>) on the policy's snapshots.
      - Defaults to C(default), except with O(state=enforced) and no policy keys, where leaving it out
        enforces every stored policy.
    type: str
  state:
    description:
      - C(present) stores the policy on the host (changed only when it differs).
      - C(absent) removes the stored policy; its snapshots stay.
      - C(enforced) takes what is due at O(now), prunes by retention and consolidates. With policy keys
        (O(snapshot_type), O(schedule), O(retain), O(conditions), O(max_chain_length),
        O(auto_consolidate), O(naming)) it enforces those; without, the stored policy O(name), or
        every stored policy when O(name) is not given. O(domain)/O(domains) then narrow a stored
        policy to those domains.
    type: str
    choices: [present, enforced, absent]
    default: present
  domains:
    description:
      - Names or shell-style globs (C(web-*)) of the libvirt domains the policy covers, matched
        against the domains defined on the host when the policy is enforced.
      - Required with O(state=present), and with O(state=enforced) when policy keys are given.
      - A literal name that is not defined on the host gives a warning, not an error.
    type: list
    elements: str
  domain:
    description: One domain name; the same as O(domains) with one element.
    type: str
  snapshot_type:
    description:
      - The type of the snapshots the policy takes (see M(nova.snapshots.nova_snapshot)). Default C(disk_only).
      - A C(memory) policy skips a domain that is shut off (reported in RV(skipped)).
    type: str
    choices: [disk_only, external, memory, internal]
  schedule:
    description:
      - When snapshots are due. Times are wall-clock times in the time zone of O(now) (the host's
        local time by default). A period is due when its last scheduled instant is not after O(now)
        and the policy's newest snapshot of that period is older than that instant, so a run after a
        pause catches up with one snapshot, not one per missed instant.
      - A period whose O(retain) count is V(0) is never taken.
    type: dict
    suboptions:
      hourly:
        description: Every hour on the hour.
        type: bool
      daily:
        description: C(HH:MM), for example V(02:00).
        type: str
      weekly:
        description: C(<weekday> HH:MM), for example V(sunday 03:00).
        type: str
      monthly:
        description:
          - C(<first|second|third|fourth|last>-<weekday> HH:MM), for example V(first-sunday 04:00),
            or C(<day> HH:MM) with a day from 1 to 28.
        type: str
      yearly:
        description: C(MM-DD HH:MM), for example V(01-01 05:00) (not February 29).
        type: str
  retain:
    description:
      - How many snapshots of each period to keep (whole numbers >= 0). A period without a count keeps all of its snapshots.
    type: dict
    suboptions:
      hourly:
        description: Hourly snapshots to keep.
        type: int
      daily:
        description: Daily snapshots to keep.
        type: int
      weekly:
        description: Weekly snapshots to keep.
        type: int
      monthly:
        description: Monthly snapshots to keep.
        type: int
      yearly:
        description: Yearly snapshots to keep.
        type: int
      conditional:
        description:
          - Snapshots taken only because of a condition (no period was due) to keep, newest first.
            Without it they are all kept; with V(0) none are taken.
        type: int
  conditions:
    description: Snapshots taken when something happened, checked each time the policy is enforced.
    type: dict
    suboptions:
      on_shutdown:
        description:
          - Take a snapshot (purpose C(shutdown)) after the domain shut down. The libvirt qemu hook
            installed by the C(nova.snapshots.snapshot_schedule) role only creates
            C(<storage_dir>/queue/<domain>.shutdown); enforcing takes the snapshot and removes the file.
        type: bool
      on_change_percent:
        description:
          - Take a snapshot (purpose C(change)) when this share (above 0, at most 100) of a disk's virtual
            size has been written since the last snapshot, measured as the data allocated in the
            disk's active overlay (C(qemu-img map) of the top image). Not measured for disks that do
            not run on an overlay (internal-snapshot histories).
        type: float
      on_uptime:
        description:
          - Take a snapshot (purpose C(uptime)) when the domain is running and the policy's newest
            snapshot is older than this duration, for example V(24h), V(90m), V(2d), V(1d12h).
        type: str
  max_chain_length:
    description:
      - The longest backing chain (images, the active one included) consolidation leaves. Default V(10).
    type: int
  auto_consolidate:
    description:
      - After pruning, shorten each domain's chains to O(max_chain_length) with the chain consolidation
        core of the collection (the one behind M(nova.snapshots.nova_chain)). Default V(false).
    type: bool
  naming:
    description:
      - Template of snapshot names. Fields - C({vm}) the domain, C({purpose}) the longest period due
        (else the condition), C({date}) C(YYYYMMDD) and C({time}) C(HHMM) of O(now), C({seq}) a
        3-digit counter per domain and day. Default C({vm}-{purpose}-{date}-{seq}), which gives names
        like C(web-server-daily-20261125-001).
    type: str
  now:
    description:
      - The time to enforce at, ISO 8601 (V(2026-11-25T02:00:00Z)); without an offset, the host's local
        time. Default the current time. For tests and catch-up runs.
    type: str
  checksum:
    description:
      - With O(state=enforced), record the checksum of each file the snapshots taken freeze, for
        M(nova.snapshots.nova_snapshot_verify) (see O(nova.snapshots.nova_snapshot#module:checksum)).
        C(none) records nothing; the nightly verification then records them.
    type: str
    choices: [none, sha256, blake3]
    default: none
    version_added: 1.0.0
extends_documentation_fragment:
  - nova.snapshots.common
  - nova.snapshots.common.store
  - nova.snapshots.encryption
  - nova.snapshots.encryption.policy
  - nova.snapshots.audit
attributes:
  check_mode:
    support: full
    description: Reports the plan (RV(taken), RV(pruned), RV(kept)) and changes nothing.
  diff_mode:
    support: full
    description:
      - O(state=present) and O(state=absent) show the stored policy before and after.
      - O(state=enforced) shows each domain's snapshots of the policy before and after.
  idempotent:
    support: full
    description: Enforcing again at the same O(now) finds nothing due and nothing to prune.
author:
  - nova.snapshots developers (@nova-snapshots)
seealso:
  - module: nova.snapshots.nova_snapshot
  - module: nova.snapshots.nova_chain
'''

EXAMPLES = r'''
- name: Store the web servers' policy on the hypervisor
  nova.snapshots.nova_policy:
    name: web
    domains: ["web-*"]
    snapshot_type: disk_only
    schedule: {hourly: true, daily: "02:00", weekly: "sunday 03:00", monthly: "first-sunday 04:00"}
    retain: {hourly: 24, daily: 7, weekly: 4, monthly: 12, yearly: 3}
    conditions: {on_shutdown: true, on_change_percent: 10, on_uptime: 24h}
    max_chain_length: 10
    auto_consolidate: true
    naming: "{vm}-{purpose}-{date}-{seq}"

- name: Enforce it now (what a timer runs every hour)
  nova.snapshots.nova_policy:
    name: web
    state: enforced
  register: enforced

- name: Show what was kept and why
  ansible.builtin.debug:
    msg: "{{ enforced.kept | map(attribute='name') | zip(enforced.kept | map(attribute='rules')) | list }}"

- name: Enforce every policy stored on the host
  nova.snapshots.nova_policy:
    state: enforced

- name: Enforce it with encrypted, zstd-compressed snapshots (and the key its prunes need)
  nova.snapshots.nova_policy:
    name: web
    state: enforced
    encrypt: true
    key_file: /secure/keys/snapshot.key
    memory_compression: zstd

- name: What would a run at 02:00 do? (check mode changes nothing)
  nova.snapshots.nova_policy:
    name: web
    state: enforced
    now: "2026-11-26T02:00:00"
  check_mode: true

- name: Enforce a policy given in the task without storing it
  nova.snapshots.nova_policy:
    name: db-nightly
    domain: db-server
    state: enforced
    schedule: {daily: "01:30"}
    retain: {daily: 14}

- name: Remove the stored policy (its snapshots stay)
  nova.snapshots.nova_policy:
    name: web
    state: absent
'''

RETURN = r'''
policy:
  description:
    - The policy, normalized (defaults filled in, times in one spelling). Null when O(state=enforced)
      enforced several stored policies (see RV(policies)), or when O(state=absent) found none.
  returned: always
  type: dict
  sample:
    name: web
    domains: ["web-*"]
    snapshot_type: disk_only
    schedule: {hourly: true, daily: "02:00"}
    retain: {hourly: 24, daily: 7}
    conditions: {on_shutdown: true}
    max_chain_length: 10
    auto_consolidate: false
    naming: "{vm}-{purpose}-{date}-{seq}"
policies:
  description: Every policy the task stored, removed or enforced, normalized.
  returned: always
  type: list
  elements: dict
taken:
  description: Snapshots taken (or, in check mode, that would be), one per domain and policy at most.
  returned: always
  type: list
  elements: dict
  contains:
    domain:
      description: The domain.
      type: str
    policy:
      description: The policy's name.
      type: str
    name:
      description: The snapshot's name.
      type: str
    purposes:
      description: The periods that were due and the conditions that held (C(shutdown), C(change), C(uptime)).
      type: list
      elements: str
    reason:
      description: Why, in words.
      type: str
  sample: [{domain: web-1, policy: web, name: web-1-daily-20261126-001, purposes: [daily, hourly],
            reason: "daily due since 2026-11-26T02:00:00+00:00; hourly due since 2026-11-26T02:00:00+00:00"}]
pruned:
  description: The policy's snapshots deleted by retention (or that would be), with the rule that dropped each.
  returned: always
  type: list
  elements: dict
  contains:
    domain:
      description: The domain.
      type: str
    policy:
      description: The policy's name.
      type: str
    name:
      description: The snapshot's name.
      type: str
    rule:
      description: Why it went, per period it served.
      type: str
  sample: [{domain: web-1, policy: web, name: web-1-hourly-20261125-003, rule: "hourly: 25th newest of 25, 24 kept"}]
kept:
  description: The policy's snapshots that stay, with the rules that keep each.
  returned: always
  type: list
  elements: dict
  contains:
    domain:
      description: The domain.
      type: str
    policy:
      description: The policy's name.
      type: str
    name:
      description: The snapshot's name.
      type: str
    rules:
      description: For example C(daily 3 of 7), C(hourly 1 of 24), C(protected).
      type: list
      elements: str
consolidated:
  description: Domains whose chains were consolidated (O(auto_consolidate)), with the merges made.
  returned: always
  type: list
  elements: dict
  contains:
    domain:
      description: The domain.
      type: str
    policy:
      description: The policy's name.
      type: str
    merged:
      description: The merges, as the chain core describes them.
      type: list
      elements: raw
    actions:
      description: What was done, in words.
      type: list
      elements: str
skipped:
  description: Domains where a snapshot was due but could not be taken, and why (a memory policy on a shut-off VM).
  returned: always
  type: list
  elements: dict
dequeued:
  description: Domains whose shutdown queue file was consumed (or would be, in check mode).
  returned: always
  type: list
  elements: str
missing:
  description: Literal domain names of a policy that are not defined on the host (also given as warnings).
  returned: always
  type: list
  elements: dict
timings:
  description:
    - Seconds the task spent per phase, each second counted once (in the innermost phase), so a slow run
      can be explained from its result. C(plan) is the engine's planning, C(lock_wait) waiting for the
      domain's lock, C(libvirt) and C(qemu_img) the calls to them, C(store) crash-safe metadata writes,
      C(apply) the engine's own work while applying; C(total) is the whole task on the hypervisor.
  returned: always
  type: dict
  sample: {"plan": 0.012, "lock_wait": 0.0, "libvirt": 0.84, "qemu_img": 0.21, "store": 0.006, "apply": 0.01, "total": 1.12}
  version_added: 1.0.0
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.nova.snapshots.plugins.module_utils._common import argument_spec, run_module, snapshot_manager
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._checksum import BLAKE3_IMPORT_ERROR, HAS_BLAKE3
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import QemuImg
from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import POLICY_SPEC, missing_library
from ansible_collections.nova.snapshots.plugins.module_utils.operations._policies import policy_task
from ansible_collections.nova.snapshots.plugins.module_utils.operations._verify import record_taken

PERIODS = ('hourly', 'daily', 'weekly', 'monthly', 'yearly')
SPEC = argument_spec(
    store=True, audited=True,
    name=dict(type='str'),
    state=dict(type='str', default='present', choices=['present', 'enforced', 'absent']),
    domains=dict(type='list', elements='str'),
    domain=dict(type='str'),
    snapshot_type=dict(type='str', choices=['disk_only', 'external', 'memory', 'internal']),
    schedule=dict(type='dict', options=dict(
        hourly=dict(type='bool'),
        daily=dict(type='str'),
        weekly=dict(type='str'),
        monthly=dict(type='str'),
        yearly=dict(type='str'),
    )),
    retain=dict(type='dict', options=dict(conditional=dict(type='int'), **dict((k, dict(type='int')) for k in PERIODS))),
    conditions=dict(type='dict', options=dict(
        on_shutdown=dict(type='bool'),
        on_change_percent=dict(type='float'),
        on_uptime=dict(type='str'),
    )),
    max_chain_length=dict(type='int'),
    auto_consolidate=dict(type='bool'),
    naming=dict(type='str'),
    now=dict(type='str'),
    checksum=dict(type='str', default='none', choices=['none', 'sha256', 'blake3']),
    **POLICY_SPEC
)


def main():
    module = AnsibleModule(
        argument_spec=SPEC,
        mutually_exclusive=[('domain', 'domains')],
        required_if=[('state', 'present', ('domain', 'domains'), True)],
        supports_check_mode=True,
    )
    if module.params['checksum'] == 'blake3' and not HAS_BLAKE3:
        module.fail_json(msg=missing_required_lib('blake3'), exception=BLAKE3_IMPORT_ERROR)
    missing = missing_library(module.params)
    if missing:
        module.fail_json(msg=missing_required_lib(missing[0]), exception=missing[1])
    run_module(module, lambda hypervisor: record_taken(    # nova_snapshot_verify's checksums of what was taken
        policy_task(module.params, hypervisor, QemuImg(module.run_command), module.check_mode, module.warn),
        lambda domain: snapshot_manager(module, hypervisor, domain), module.params, module.check_mode))


if __name__ == '__main__':
    main()
