#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: nova_chain
short_description: Show and check the backing chains of a libvirt domain's disks
version_added: 0.1.0
description:
  - Shows each disk's backing chain, from the image the VM writes to down to the base image, with
    every file's format, sizes, depth and the snapshot it belongs to, and how much more space the
    chain takes than one flattened image would.
  - With O(state=validated), checks the chains. Every backing reference must exist, be an absolute
    path and record its format. C(qemu-img check) must be clean (leaked clusters are told apart from
    corruption). libvirt's XML, the collection's snapshot records and the files must agree. Each
    problem names the file and the fix. A chain longer than O(max_chain_length) gives the warning
    "Snapshot chain length exceeds recommended limit".
  - Reads only; running VMs are read with shared locks.
options:
  domain:
    description: Name of the libvirt domain (VM).
    type: str
    required: true
  state:
    description:
      - C(reported) reports the chains (the design's C(info); ansible-test reserves that word for C(_info) modules).
      - C(validated) also checks them, and fails listing every error (warnings are returned and shown).
    type: str
    choices: [reported, validated]
    default: reported
  disks:
    description: Target names of the disks to look at. Default is every writable disk.
    type: list
    elements: str
  max_chain_length:
    description: The longest chain (images, the active one included) that is not warned about.
    type: int
    default: 10
extends_documentation_fragment:
  - nova.snapshots.common
  - nova.snapshots.common.store
attributes:
  check_mode:
    support: full
    description: Reads only; check mode returns the same result.
  diff_mode:
    support: none
    description: Changes nothing.
  idempotent:
    support: full
    description: Reads only.
author:
  - nova.snapshots developers (@nova-snapshots)
seealso:
  - module: nova.snapshots.nova_snapshot
'''

EXAMPLES = r'''
# nova snapshot chain-info web-server --detailed
- name: Show the chains
  nova.snapshots.nova_chain:
    domain: web-server
  register: chains

- name: Check them; fail with the fixes when something is wrong
  nova.snapshots.nova_chain:
    domain: web-server
    state: validated
    max_chain_length: 10
'''

RETURN = r'''
disks:
  description: Per disk target, its chain.
  returned: always
  type: dict
  contains:
    chain:
      description: The images from the active one (depth 0) down to the base.
      type: list
      elements: dict
      contains:
        file:
          description: The image.
          type: str
        format:
          description: Its format.
          type: str
        virtual_size:
          description: Its virtual size in bytes.
          type: int
        actual_size:
          description: Bytes it takes on disk.
          type: int
        depth:
          description: 0 for the active image, 1 for its backing file, and so on.
          type: int
        snapshot:
          description: The snapshot whose state this image holds, or null.
          type: str
    length:
      description: Number of images in the chain.
      type: int
    overhead_percent:
      description: Extra space the chain takes over one flattened image, in percent.
      type: float
  sample: {"vda": {"length": 3, "overhead_percent": 12.5, "chain": []}}
problems:
  description: What is wrong (empty with O(state=reported)).
  returned: always
  type: list
  elements: dict
  contains:
    disk:
      description: The disk target.
      type: str
    file:
      description: The file concerned.
      type: str
    severity:
      description: C(error) or C(warning).
      type: str
    problem:
      description: What is wrong.
      type: str
    fix:
      description: How to fix it.
      type: str
space_saved:
  description: Bytes freed (always 0 for C(reported) and C(validated)).
  returned: always
  type: int
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nova.snapshots.plugins.module_utils._chain_health import check_chain, describe_chain, live_chain, problem
from ansible_collections.nova.snapshots.plugins.module_utils._chains import real
from ansible_collections.nova.snapshots.plugins.module_utils._common import argument_spec, run_module
from ansible_collections.nova.snapshots.plugins.module_utils._errors import NovaError
from ansible_collections.nova.snapshots.plugins.module_utils._qemu_img import QemuImg
from ansible_collections.nova.snapshots.plugins.module_utils._snapshots import SnapshotManager


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            store=True,
            domain=dict(type='str', required=True),
            state=dict(type='str', default='reported', choices=['reported', 'validated']),
            disks=dict(type='list', elements='str'),
            max_chain_length=dict(type='int', default=10),
        ),
        supports_check_mode=True,
    )
    p = module.params

    def action(hypervisor):
        qemu_img = QemuImg(module.run_command)
        manager = SnapshotManager(hypervisor, p['domain'], p['storage_dir'], qemu_img, lock_timeout=p['lock_timeout'])
        tree = manager.load(write=False)[0]
        dom = manager.domain_xml()
        targets = manager.select_disks(dom, [d for d in dom.disks if d.writable], p["disks"])
        snapshot_of = dict((real(d.file_path), s.name) for s in tree.snapshots.values() for d in s.disk_files)
        validate = p['state'] == 'validated'
        disks, problems = {}, []
        for disk in [d for d in dom.disks if d.target in targets]:
            if validate:
                live = live_chain(disk) if manager.domain.is_active else None
                problems += check_chain(manager.view, qemu_img, disk.target, disk.source_file, p['max_chain_length'], live)
            try:
                disks[disk.target] = describe_chain(manager.view, qemu_img, disk.source_file, snapshot_of)
            except NovaError:
                if not validate:
                    raise
                disks[disk.target] = dict(chain=[], length=0, overhead_percent=0.0)   # the problem is listed
        if validate:
            for snap in tree.ordered():
                for d in snap.disk_files:
                    if snap.has_overlays and not os.path.exists(d.file_path):
                        problems.append(problem(d.device, d.file_path, 'error',
                                                "snapshot '%s' cannot be reverted: its image %s is missing" % (snap.name, d.file_path),
                                                'delete the snapshot (nova_snapshot state=absent) or restore the file'))
        for warning in [x for x in problems if x['severity'] == 'warning']:
            module.warn('%s: %s (fix: %s)' % (warning['disk'], warning['problem'], warning['fix']))
        errors = [x for x in problems if x['severity'] == 'error']
        if errors:
            raise NovaError('%d problem(s) in the chains of %s: %s' % (len(errors), p['domain'],
                                                                       '; '.join('%s (fix: %s)' % (e['problem'], e['fix']) for e in errors)),
                            problems=problems, disks=disks)
        return dict(changed=False, disks=disks, problems=problems, space_saved=0)

    run_module(module, action)


if __name__ == '__main__':
    main()
