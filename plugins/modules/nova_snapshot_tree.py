#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: nova_snapshot_tree
short_description: Git-like branches of a libvirt domain's snapshots - create, switch, merge, delete
version_added: 1.0.0
description:
  - A branch is a named, writable line of work that starts at a snapshot, like a git branch. On a
    branch the VM's disks are overlays on that snapshot's frozen images. One branch is active; the VM
    runs on it.
  - Switching never loses the state of the branch left behind. Its overlays are kept and, when the VM
    was running, its RAM is saved (like a managed save), so switching back resumes it exactly.
  - Merging brings one branch's changes into another, block by block, against their common ancestor.
    The result is a new snapshot on the target that records both parents.
  - The first branch operation names the VM's existing line C(main).
  - Branches need external, memory or disk_only snapshots; a domain with internal snapshots is refused.
  - Every call returns the whole tree, as nested nodes, drawn as text and as Graphviz.
options:
  domain:
    description: Name of the libvirt domain (VM).
    type: str
    required: true
  state:
    description:
      - C(branched) creates branch O(name) starting at snapshot O(from) (and activates it with O(switch)).
      - C(switched) makes O(name) the active line. O(name) is a branch, or a snapshot (then a branch of
        that name starts there). Switching to the active branch is not a change.
      - C(merged) merges O(source) into O(target).
      - C(absent) deletes branch O(name) with its overlays and saved RAM; the active branch is refused.
    type: str
    choices: [branched, switched, merged, absent]
    required: true
  name:
    description: The branch (or, with O(state=switched), a branch or a snapshot).
    type: str
  from:
    description: With O(state=branched), the snapshot the branch starts at.
    type: str
  switch:
    description: With O(state=branched), also make the new branch the active one.
    type: bool
    default: false
  source:
    description: With O(state=merged), the branch (or snapshot) whose changes are merged.
    type: str
  target:
    description:
      - With O(state=merged), the branch that receives them. A snapshot name starts a branch of that name there.
    type: str
  conflict:
    description:
      - With O(state=merged), what to do with blocks both sides changed differently since their common
        ancestor. C(fail) changes nothing and reports the conflicts as disk byte ranges; C(source) or
        C(target) take that side's bytes.
    type: str
    choices: [fail, source, target]
    default: fail
  result_name:
    description:
      - With O(state=merged), the name of the merge snapshot. Default C(merge-<source>-into-<target>).
    type: str
extends_documentation_fragment:
  - nova.snapshots.common
  - nova.snapshots.common.store
  - nova.snapshots.audit
  - nova.snapshots.encryption
attributes:
  check_mode:
    support: full
    description: Reports the planned actions and changes nothing.
  diff_mode:
    support: full
    description: Shows the branches and the active one before and after.
  idempotent:
    support: full
    description: A branch that exists, a switch to the active branch, a source already merged are not changes.
notes:
  - A block-level merge promises what it says at the block level. Blocks changed on one side only come
    from that side; blocks changed on both sides are conflicts unless equal. It cannot promise a
    consistent filesystem when both sides changed the same filesystem; its metadata (allocation
    bitmaps, journals, directories) usually lives in blocks both sides touched, which then show up as
    conflicts. It is exact for disks or regions that only one side wrote, for data written at fixed
    offsets, and for fast-forwards. Check the result (for example with fsck) before trusting it.
  - Merging into the active branch needs the VM shut off, because the target's overlays are rebased.
  - On encrypted chains (see C(docs/encryption.md)) switches and merges need O(key_file). A switch saves
    the RAM of a branch left running on encrypted disks sealed (AES-256-GCM, through C(/dev/shm), never in
    clear on a disk), starts LUKS overlays on an encrypted snapshot, and restores sealed or compressed RAM
    the way a revert does. A merge reads the LUKS layers with the key; its result snapshot is a LUKS overlay
    when either side is encrypted. A merge that would leave the target's unencrypted overlay (its writes
    since its tip) on encrypted images is refused, saying to take an encrypted snapshot of the target first.
author:
  - nova.snapshots developers (@nova-snapshots)
seealso:
  - module: nova.snapshots.nova_snapshot
  - module: nova.snapshots.nova_snapshot_info
'''

EXAMPLES = r'''
# nova snapshot branch web-server base-install new-feature-branch
- name: Start a branch at base-install
  nova.snapshots.nova_snapshot_tree:
    domain: web-server
    state: branched
    name: new-feature-branch
    from: base-install

# nova snapshot switch web-server security-updates
- name: Work on top of security-updates (a branch of that name starts there)
  nova.snapshots.nova_snapshot_tree:
    domain: web-server
    state: switched
    name: security-updates

# nova snapshot merge web-server testing-branch security-updates
- name: Merge the testing branch into security-updates, source wins conflicts
  nova.snapshots.nova_snapshot_tree:
    domain: web-server
    state: merged
    source: testing-branch
    target: security-updates
    conflict: source

- name: Switch to a branch of an encrypted snapshot (the key opens its layers and seals the RAM left behind)
  nova.snapshots.nova_snapshot_tree:
    domain: web-server
    state: switched
    name: encrypted-backup
    key_file: /secure/keys/snapshot.key

- name: Drop a branch
  nova.snapshots.nova_snapshot_tree:
    domain: web-server
    state: absent
    name: new-feature-branch

# nova snapshot branches web-server (a one-liner:
#   ansible localhost -m nova.snapshots.nova_snapshot_info -a domain=web-server)
- name: Show the tree
  nova.snapshots.nova_snapshot_info:
    domain: web-server
  register: info
- ansible.builtin.debug:
    msg: "{{ info.tree_text }}"
'''

RETURN = r'''
tree:
  description: The snapshots as nested nodes, roots first, children oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The snapshot's name.
      type: str
    type:
      description: Its type.
      type: str
    created_at:
      description: Creation time, ISO 8601 UTC.
      type: str
    children:
      description: Its children, as nodes of the same shape.
      type: list
      elements: dict
branches:
  description: Every branch.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The branch.
      type: str
    base:
      description: The snapshot it starts at (null for C(main)).
      type: str
    head:
      description: The newest snapshot taken on it, or null.
      type: str
    active:
      description: Whether the VM runs on it.
      type: bool
    saved_ram:
      description: Whether its RAM is kept from when it was left running.
      type: bool
current:
  description: The current snapshot (the parent of the next one), or null.
  returned: always
  type: str
tree_text:
  description: The tree drawn as text, the current snapshot marked C(*) and branch heads C([name]).
  returned: always
  type: str
tree_dot:
  description: The tree as a Graphviz digraph (render with C(dot -Tpng)).
  returned: always
  type: str
conflicts:
  description: With O(state=merged), the ranges both sides changed differently, per disk.
  returned: when O(state=merged)
  type: list
  elements: str
actions:
  description: What the task did, or would do in check mode.
  returned: always
  type: list
  elements: str
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

from ansible_collections.nova.snapshots.plugins.module_utils._common import argument_spec, run_plan
from ansible_collections.nova.snapshots.plugins.module_utils.operations._branches import TreeManager
from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import KEY_SPEC, missing_library


def plan(manager, tree, p):
    branches = TreeManager(manager)
    if p['state'] == 'branched':
        return branches.plan_branch(tree, p['name'], p['from'], switch=p['switch'], key_file=p['key_file'])
    if p['state'] == 'switched':
        return branches.plan_switch(tree, p['name'], key_file=p['key_file'])
    if p['state'] == 'merged':
        return branches.plan_merge(tree, p['source'], p['target'], p['conflict'], p['result_name'], key_file=p['key_file'])
    return branches.plan_delete_branch(tree, p['name'])


def finish(manager, result):
    """The tree as it is now, whatever the task did."""
    result.pop('snapshot', None)
    result.update(TreeManager(manager).tree_view(manager.load(write=False)[0]))


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            store=True, audited=True,
            domain=dict(type='str', required=True),
            state=dict(type='str', required=True, choices=['branched', 'switched', 'merged', 'absent']),
            name=dict(type='str'),
            switch=dict(type='bool', default=False),
            source=dict(type='str'),
            target=dict(type='str'),
            conflict=dict(type='str', default='fail', choices=['fail', 'source', 'target']),
            result_name=dict(type='str'),
            **dict(KEY_SPEC, **{'from': dict(type='str')})
        ),
        required_if=[
            ('state', 'branched', ('name', 'from')),
            ('state', 'switched', ('name',)),
            ('state', 'merged', ('source', 'target')),
            ('state', 'absent', ('name',)),
        ],
        supports_check_mode=True,
    )
    missing = missing_library(module.params)
    if missing:
        module.fail_json(msg=missing_required_lib(missing[0]), exception=missing[1])
    run_plan(module, plan, finish)


if __name__ == '__main__':
    main()
