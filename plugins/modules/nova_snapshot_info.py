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
version_added: 0.1.0
description:
  - Lists the snapshots of one libvirt domain, or of every domain, with the collection's full record
    of each (the seed's VmSnapshot) - parent, children, creation time, VM state, type, disk files,
    memory file, tags, category and which one is current.
  - Snapshots made outside the collection (for example with C(virsh snapshot-create-as)) are listed
    too, and adopted into the collection's store so the other modules can revert and delete them.
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
    description: Reads only; in check mode snapshots made outside the collection are listed but not adopted.
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
adopted:
  description: Snapshots found in libvirt but not in the store, adopted now (per domain).
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
'''

import calendar
import fnmatch
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nova.snapshots.plugins.module_utils._common import argument_spec, run_module
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import DomainNotFound, NovaError, SnapshotNotFound
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import QemuImg
from ansible_collections.nova.snapshots.plugins.module_utils.operations._branches import TreeManager


def parse_time(value, option):
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    for fmt in ('%Y-%m-%dT%H:%M:%SZ', '%Y-%m-%dT%H:%M:%S', '%Y-%m-%d %H:%M:%S', '%Y-%m-%d'):
        try:
            return calendar.timegm(time.strptime(value, fmt))
        except ValueError:
            pass
    raise NovaError("%s: cannot read %r as a time; use 2026-11-25, 2026-11-25T20:00:00Z or seconds since the epoch"
                    % (option, value))


def matches(snap, p, after, before):
    if p['name'] is not None and not fnmatch.fnmatchcase(snap.name, p['name']):
        return False
    if p['tags'] and not set(p['tags']) <= set(snap.tags):
        return False
    if p['category'] is not None and snap.category != p['category']:
        return False
    if p['snapshot_type'] is not None and snap.snapshot_type != p['snapshot_type']:
        return False
    created = snap.creation_time or 0
    return (after is None or created >= after) and (before is None or created < before)


def chain_details(qemu_img, path):
    return [dict(file=i.filename, format=i.format, virtual_size=i.virtual_size, actual_size=i.actual_size,
                 backing_file=i.backing_file, internal_snapshots=i.snapshots) for i in qemu_img.chain(path)]


def queries(manager, tree, p):
    """path_to_root / descendants / common_ancestor, answered with snapshot names."""
    def snap_id(name):
        snap = tree.by_name(name)
        if snap is None:
            raise SnapshotNotFound(manager.domain.name, name)
        return snap.id

    def name(sid):
        return tree.snapshots[sid].name if sid in tree.snapshots else None

    out = {}
    if p['path_to_root']:
        out['path_to_root'] = [name(i) for i in tree.path_to_root(snap_id(p['path_to_root']))]
    if p['descendants']:
        out['descendants'] = [s.name for s in tree.descendants(snap_id(p['descendants']))]
    if p['common_ancestor']:
        if len(p['common_ancestor']) != 2:
            raise NovaError('common_ancestor takes exactly two snapshot names')
        out['common_ancestor'] = name(tree.common_ancestor(*[snap_id(n) for n in p['common_ancestor']]))
    return out


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
    p = module.params

    def action(hypervisor):
        after = parse_time(p['created_after'], 'created_after')
        before = parse_time(p['created_before'], 'created_before')
        qemu_img = QemuImg(module.run_command)
        names = [p['domain']] if p['domain'] else hypervisor.domain_names()
        result = dict(changed=False, snapshots=[], domains={}, adopted={})
        for name in names:
            try:
                manager = TreeManager(hypervisor, name, p['storage_dir'], qemu_img, lock_timeout=p['lock_timeout'])
                tree, adopted = manager.read(write=not module.check_mode)
            except DomainNotFound:
                if p['domain']:
                    raise
                continue        # undefined since it was listed: not there to report
            except NovaError as e:
                if p['domain']:
                    raise
                module.warn("domain '%s' skipped: %s" % (name, e.msg))   # one broken domain does not hide the others
                continue
            current = tree.snapshots.get(tree.current)
            result['domains'][name] = dict(state=manager.domain.state, current=current.name if current else None)
            if adopted:
                result['adopted'][name] = adopted
            for snap in tree.ordered():
                if not matches(snap, p, after, before):
                    continue
                record = manager.describe(tree, snap)
                record['parent'] = record['parent_name']
                if p['details']:
                    for disk in record['disk_files']:
                        disk['chain'] = chain_details(qemu_img, disk['file_path'])
                result['snapshots'].append(record)
        if p['domain']:
            result['domain_state'] = result['domains'][p['domain']]['state']
            result['current'] = result['domains'][p['domain']]['current']
            view = manager.tree_view(tree)
            result.update(branches=view['branches'], tree_text=view['tree_text'])
            result.update(queries(manager, tree, p))
        return result

    run_module(module, action)


if __name__ == '__main__':
    main()
