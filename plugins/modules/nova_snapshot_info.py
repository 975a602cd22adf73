#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: nova_snapshot_info
short_description: List a libvirt domain's snapshots
version_added: 0.1.0
description:
  - Lists the snapshots of a libvirt domain as libvirt reports them, with their parent, creation
    time, the VM state they recorded and which one is current.
  - Changes nothing; safe in check mode.
options:
  domain:
    description:
      - Name of the libvirt domain (VM).
    type: str
    required: true
  name:
    description:
      - Only list snapshots whose name matches this shell-style pattern (for example C(nightly-*)).
    type: str
extends_documentation_fragment:
  - nova.snapshots.common
attributes:
  check_mode:
    support: full
    description: Reads only; check mode returns the same result.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to diff.
author:
  - nova.snapshots developers (@nova-snapshots)
'''

EXAMPLES = r'''
- name: List the snapshots of web-server
  nova.snapshots.nova_snapshot_info:
    domain: web-server
  register: snaps

- name: Show the current snapshot
  ansible.builtin.debug:
    msg: "{{ snaps.current }}"

- name: Only the nightly ones, on a remote hypervisor
  nova.snapshots.nova_snapshot_info:
    domain: db-server
    name: "nightly-*"
    uri: qemu+ssh://root@hv2/system
'''

RETURN = r'''
domain_state:
  description: The domain's state now, as C(virsh domstate) names it.
  returned: success
  type: str
  sample: running
current:
  description: Name of the current snapshot (the parent of the next one), or null when there is none.
  returned: success
  type: str
  sample: app-v1.0
snapshots:
  description: The snapshots, oldest first.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The snapshot's name.
      type: str
      sample: app-v1.0
    description:
      description: The snapshot's description, or null.
      type: str
    parent:
      description: Name of the parent snapshot, or null for a root.
      type: str
      sample: security-updates
    created_at:
      description: Creation time, ISO 8601 in UTC.
      type: str
      sample: "2026-11-25T20:39:12Z"
    creation_time:
      description: Creation time in seconds since the epoch, as libvirt stores it.
      type: int
      sample: 1795639152
    vm_state:
      description: The VM state the snapshot recorded (C(running), C(paused), C(shutoff), C(disk-snapshot)).
      type: str
      sample: running
    snapshot_type:
      description:
        - C(internal), C(memory) or C(disk_only), derived from libvirt's XML.
        - libvirt cannot tell an external snapshot with RAM from a memory snapshot; both read as C(memory).
      type: str
      sample: internal
    is_current:
      description: Whether this is the current snapshot.
      type: bool
    disks:
      description: The disks the snapshot covers.
      type: list
      elements: dict
      contains:
        device:
          description: Target device, for example C(vda).
          type: str
        snapshot:
          description: How the disk was snapshotted (C(internal), C(external), C(no)).
          type: str
        file:
          description: For external snapshots, the overlay file created for the disk.
          type: str
    memory_file:
      description: File holding the RAM state of an external snapshot, or null.
      type: str
'''

import fnmatch
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nova.snapshots.plugins.module_utils._common import argument_spec, run_module
from ansible_collections.nova.snapshots.plugins.module_utils._snapshot_xml import SnapshotXML


def describe(xml, current):
    snap = SnapshotXML(xml)
    created = snap.creation_time
    return dict(
        name=snap.name,
        description=snap.description,
        parent=snap.parent,
        creation_time=created,
        created_at=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(created)) if created is not None else None,
        vm_state=snap.state,
        snapshot_type=snap.snapshot_type,
        is_current=snap.name == current,
        disks=[dict(device=d.name, snapshot=d.snapshot, file=d.source_file) for d in snap.disks],
        memory_file=snap.memory_file,
    )


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            domain=dict(type='str', required=True),
            name=dict(type='str'),
        ),
        supports_check_mode=True,
    )

    def action(hypervisor):
        domain = hypervisor.domain(module.params['domain'])
        current = domain.current_snapshot_name()
        snapshots = [describe(xml, current) for name, xml in domain.snapshot_xmls()
                     if module.params['name'] is None or fnmatch.fnmatchcase(name, module.params['name'])]
        snapshots.sort(key=lambda s: (s['creation_time'] or 0, s['name']))
        return dict(changed=False, domain_state=domain.state, current=current, snapshots=snapshots)

    run_module(module, action)


if __name__ == '__main__':
    main()
