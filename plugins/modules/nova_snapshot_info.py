#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: nova_snapshot_info
short_description: List and query the snapshots of libvirt domains
version_added: 1.0.0
description:
  - Lists the snapshots of one libvirt domain, or of every domain, with the collection's full record
    of each (the nova design's VmSnapshot) - parent, children, creation time, VM state, type, disk files,
    memory file, tags, category and which one is current.
  - Snapshots made outside the collection (for example with C(virsh snapshot-create-as)) are listed
    too (reported under RV(not_adopted)); the next change any module makes to that domain adopts them
    into the collection's store, so the other modules can revert and delete them.
  - Filters by name pattern, tags, category, type and creation time; shows one snapshot's internals
    (backing chain files with their qemu-img info) on request.
options:
  domain:
    description:
      - Name of the libvirt domain (VM). When omitted, every domain on O(uri) is listed.
    type: str
  name:
    description:
      - Only snapshots whose name matches this shell-style pattern (for example C(nightly-*)).
    type: str
  tags:
    description: Only snapshots that carry every one of these tags.
    type: list
    elements: str
  category:
    description: Only snapshots of this category.
    type: str
  snapshot_type:
    description: Only snapshots of this type.
    type: str
    choices: [internal, external, memory, disk_only]
  created_after:
    description:
      - Only snapshots created at or after this time, as C(2026-11-25), C(2026-11-25T20:00:00Z) or
        seconds since the epoch.
    type: str
  created_before:
    description: Only snapshots created before this time (same forms as O(created_after)).
    type: str
  path_to_root:
    description: With O(domain), answer RV(path_to_root) for this snapshot.
    type: str
  descendants:
    description: With O(domain), answer RV(descendants) for this snapshot.
    type: str
  common_ancestor:
    description: With O(domain), two snapshots whose nearest common ancestor RV(common_ancestor) names.
    type: list
    elements: str
  details:
    description:
      - Add each listed snapshot's internals - per disk, the backing chain from its image down to the
        base, with each file's format, sizes and internal snapshots as C(qemu-img info) reports them.
    type: bool
    default: false
extends_documentation_fragment:
  - nova.snapshots.common
  - nova.snapshots.common.store
attributes:
  check_mode:
    support: full
    description: Reads only and writes nothing, in check mode or not.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to diff.
author:
  - nova.snapshots developers (@nova-snapshots)
seealso:
  - module: nova.snapshots.nova_snapshot
'''

EXAMPLES = r'''
- name: List the snapshots of web-server
  nova.snapshots.nova_snapshot_info:
    domain: web-server
  register: snaps

- name: Show the current snapshot
  ansible.builtin.debug:
    msg: "{{ snaps.current }}"

# nova snapshot list web-server --tags security
- name: Snapshots tagged security, taken this month
  nova.snapshots.nova_snapshot_info:
    domain: web-server
    tags: [security]
    created_after: "2026-11-01"

# nova snapshot list --category maintenance
- name: Maintenance snapshots of every VM on this hypervisor
  nova.snapshots.nova_snapshot_info:
    category: maintenance

# nova snapshot inspect web-server checkpoint --show-internals
- name: Tree queries
  nova.snapshots.nova_snapshot_info:
    domain: web-server
    path_to_root: experimental-feature
    descendants: app-v1.0
    common_ancestor: [app-v1.1, experimental-feature]
  register: q   # q.path_to_root, q.descendants, q.common_ancestor, q.tree_text, q.branches

- name: One snapshot's chain files
  nova.snapshots.nova_snapshot_info:
    domain: web-server
    name: checkpoint
    details: true
'''

RETURN = r'''
domain_state:
  description: The domain's state now, as C(virsh domstate) names it (with O(domain) only).
  returned: when O(domain) is given
  type: str
  sample: running
current:
  description: Name of the current snapshot (the parent of the next one), or null (with O(domain) only).
  returned: when O(domain) is given
  type: str
  sample: app-v1.0
branches:
  description: The domain's branches (see M(nova.snapshots.nova_snapshot_tree)), with O(domain) only.
  returned: when O(domain) is given
  type: list
  elements: dict
tree_text:
  description: The domain's tree drawn as text, with O(domain) only.
  returned: when O(domain) is given
  type: str
path_to_root:
  description: Names from O(path_to_root) up to its root.
  returned: when O(path_to_root) is given
  type: list
  elements: str
descendants:
  description: Names of every snapshot below O(descendants).
  returned: when O(descendants) is given
  type: list
  elements: str
common_ancestor:
  description: Name of the nearest common ancestor of the two O(common_ancestor) snapshots, or null.
  returned: when O(common_ancestor) is given
  type: str
domains:
  description: Per domain listed, its state and current snapshot.
  returned: success
  type: dict
  sample: {"web-server": {"state": "running", "current": "app-v1.0"}}
not_adopted:
  description:
    - Snapshots found in libvirt but not yet in the collection's store (made with virsh), per domain.
      They are listed in RV(snapshots) too; the next changing task on the domain adopts them.
  returned: success
  type: dict
  sample: {"web-server": ["made-by-virsh"]}
snapshots:
  description: The matching snapshots, oldest first (per domain, domains by name).
  returned: success
  type: list
  elements: dict
  contains:
    id:
      description: Unique id, also its directory in the store.
      type: str
    vm_name:
      description: The domain.
      type: str
    name:
      description: The snapshot's name.
      type: str
    description:
      description: Its description, or null.
      type: str
    snapshot_type:
      description:
        - C(internal), C(external), C(memory) or C(disk_only).
        - For snapshots adopted from libvirt an external one with RAM reads as C(memory) (libvirt cannot tell them apart).
      type: str
    created_at:
      description: Creation time, ISO 8601 in UTC.
      type: str
      sample: "2026-11-25T20:39:12Z"
    creation_time:
      description: Creation time in seconds since the epoch.
      type: int
    vm_state:
      description: The VM state it recorded (C(running), C(paused), C(shutoff), C(disk-snapshot)).
      type: str
    parent:
      description: Name of the parent snapshot, or null for a root.
      type: str
    parent_name:
      description: Same as RV(snapshots[].parent).
      type: str
    parent_snapshot:
      description: Id of the parent snapshot, or null.
      type: str
    children:
      description: Ids of its children.
      type: list
      elements: str
    is_current:
      description: Whether it is the current snapshot.
      type: bool
    size_bytes:
      description: Bytes on disk of its images and memory file.
      type: int
    disk_files:
      description: Per disk, the image holding the disk's state at the snapshot.
      type: list
      elements: dict
      contains:
        device:
          description: Target device.
          type: str
        file_path:
          description: The image.
          type: str
        format:
          description: Its format.
          type: str
        size_bytes:
          description: Its bytes on disk.
          type: int
        backing_file:
          description: Its backing file, or null.
          type: str
        chain:
          description: With O(details), the backing chain from this image down (qemu-img info per file).
          type: list
          elements: dict
    memory_file:
      description: File holding the RAM state, or null.
      type: str
    memory_size_bytes:
      description: With O(details), bytes the memory file takes on disk (null without one).
      type: int
    chain_length:
      description: With O(details), per disk the number of images the snapshot's state is read through.
      type: dict
    config_snapshot:
      description: File with libvirt's snapshot XML.
      type: str
    tags:
      description: Its tags.
      type: list
      elements: str
    category:
      description: Its category.
      type: str
    origin:
      description: C(nova) when the collection made it, C(adopted) when found in libvirt.
      type: str
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nova.snapshots.plugins.module_utils._common import argument_spec, run_module, snapshot_manager
from ansible_collections.nova.snapshots.plugins.module_utils.model._query import Filter
from ansible_collections.nova.snapshots.plugins.module_utils.operations._info import snapshot_report


def report(module, hypervisor):
    p = module.params
    selection = Filter(p['name'], p['tags'], p['category'], p['snapshot_type'], p['created_after'], p['created_before'])
    names = [p['domain']] if p['domain'] else hypervisor.domain_names()
    queries = dict(path_to_root=p['path_to_root'], descendants=p['descendants'],
                   common_ancestor=p['common_ancestor']) if p['domain'] else None
    return snapshot_report(lambda name: snapshot_manager(module, hypervisor, name), names, selection,
                           details=p['details'], queries=queries, warn=module.warn)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            store=True,
            domain=dict(type='str'),
            name=dict(type='str'),
            tags=dict(type='list', elements='str'),
            category=dict(type='str'),
            snapshot_type=dict(type='str', choices=['internal', 'external', 'memory', 'disk_only']),
            created_after=dict(type='str'),
            created_before=dict(type='str'),
            details=dict(type='bool', default=False),
            path_to_root=dict(type='str'),
            descendants=dict(type='str'),
            common_ancestor=dict(type='list', elements='str'),
        ),
        supports_check_mode=True,
    )
    run_module(module, lambda hypervisor: report(module, hypervisor))


if __name__ == '__main__':
    main()
