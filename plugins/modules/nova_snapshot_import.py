#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: nova_snapshot_import
short_description: Import an exported snapshot (bundle, OVA, disk images) as a new libvirt domain
version_added: 1.0.0
description:
  - Reads what M(nova.snapshots.nova_snapshot_export) wrote, or any OVA with a SHA256 manifest, or
    plain disk images, and defines a new domain from it.
  - Every checksum a manifest lists is verified before anything is written; a mismatch or a missing
    file fails naming the file. Each disk is then written (under a C(.partial) name), compared with
    the exported data (C(qemu-img compare)), and renamed into place; then the domain is defined under
    O(domain), with a new UUID, new MAC addresses, and its disks pointed at the imported images.
  - A bundle with a memory file is resumed from it when O(start) is set (the guest continues where
    the snapshot was taken; its MAC addresses are kept then, as the RAM state holds them).
  - A failure removes every file and definition the run made.
  - A bundle with encrypted disks (exported from an encrypted snapshot) needs O(key_file). Its disks are
    imported as LUKS-encrypted qcow2 images with the same key (never written in clear), and the new
    domain opens them through a private, ephemeral libvirt secret defined from O(key_file); after a
    libvirtd restart, run any M(nova.snapshots.nova_snapshot) task with O(key_file) on it before starting it by hand.
    The key's verifier (a password hash, never the key) is written to the new domain's store in
    O(storage_dir), so a later task given another key file is refused before anything changes.
options:
  src:
    description:
      - What to import. A bundle (directory or C(.tar)); a full bundle followed by its incrementals in
        order; an C(.ova); a directory of exported disks; or disk images (C(.qcow2), C(.vmdk), C(.raw), C(.img)).
    type: list
    elements: path
    required: true
  domain:
    description: Name of the new domain.
    type: str
    required: true
  storage_pool:
    description: A libvirt directory pool the disks become volumes of. Give this or O(dest_dir).
    type: str
  dest_dir:
    description: Directory the disks are written to. Give this or O(storage_pool).
    type: path
  start:
    description: Start the domain after defining it (from the RAM state when the bundle has one).
    type: bool
    default: false
  network:
    description: A libvirt network, or else a host bridge, every NIC of the new domain attaches to.
    type: str
  force:
    description: Replace an existing domain of that name (stopped and undefined; its disks are left) and existing disk files.
    type: bool
    default: false
  storage_dir:
    description:
      - The collection's store directory; the import's line goes to its audit trail C(<storage_dir>/audit.log).
      - An encrypted bundle's key verifier goes to the new domain's store there (C(<storage_dir>/<domain>/encryption.json)).
    type: path
    default: /var/lib/nova/snapshots
    version_added: 1.0.0
extends_documentation_fragment:
  - nova.snapshots.common
  - nova.snapshots.encryption
  - nova.snapshots.audit
attributes:
  check_mode:
    support: full
    description: Verifies the checksums and reports what would be written and defined; writes nothing.
  diff_mode:
    support: none
    description: Nothing is compared; the result lists what was written.
  idempotent:
    support: none
    description: An existing domain of the name is refused unless O(force) is set, so a second run fails or replaces.
author:
  - nova.snapshots developers (@nova-snapshots)
seealso:
  - module: nova.snapshots.nova_snapshot_export
'''

EXAMPLES = r'''
- name: Import a bundle with encrypted disks (they stay encrypted; the new domain gets its own secret)
  nova.snapshots.nova_snapshot_import:
    src: [/backup/web-server-encrypted-backup]
    domain: web-server-restored
    dest_dir: /var/lib/libvirt/images
    key_file: /secure/keys/snapshot.key

# nova snapshot import web-server-checkpoint.ova --vm-name imported-web-server --storage-pool default
- name: Import an OVA as a new VM, its disks volumes of a pool
  nova.snapshots.nova_snapshot_import:
    src: [/srv/exports/web-server-checkpoint.ova]
    domain: imported-web-server
    storage_pool: default

- name: Restore a bundle with its RAM state and resume it
  nova.snapshots.nova_snapshot_import:
    src: [/srv/exports/web-server-checkpoint.tar]
    domain: web-server-copy
    dest_dir: /var/lib/libvirt/images
    network: default
    start: true

- name: A full bundle and its incrementals give the newest snapshot's disks
  nova.snapshots.nova_snapshot_import:
    src:
      - /srv/exports/web-server-nightly-1
      - /srv/exports/web-server-nightly-2.inc
      - /srv/exports/web-server-nightly-3.inc
    domain: web-server-nightly
    dest_dir: /var/lib/libvirt/images
'''

RETURN = r'''
domain:
  description: The new domain's name.
  returned: always
  type: str
xml:
  description: Its libvirt definition (null in check mode).
  returned: always
  type: str
disks:
  description: Its disks.
  returned: always
  type: list
  elements: dict
  contains:
    device:
      description: Target device.
      type: str
    path:
      description: The image.
      type: str
    format:
      description: Its format (qcow2).
      type: str
    volume:
      description: Its volume name, with O(storage_pool).
      type: str
verified:
  description: What was checked. C(checksums) lists C(<source>:<file>) entries; C(disks) each disk compared equal.
  returned: always
  type: dict
started:
  description: Whether the domain was started.
  returned: always
  type: bool
memory_restored:
  description: Whether it resumed from the bundle's RAM state.
  returned: always
  type: bool
key_verifier:
  description: Where the key's verifier of an imported encrypted bundle was written (no key, a password hash of it).
  returned: when an encrypted bundle was imported
  type: str
  sample: /var/lib/nova/snapshots/web-server-copy/encryption.json
seconds:
  description: Seconds the import took.
  returned: always
  type: float
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nova.snapshots.plugins.module_utils._common import argument_spec, run_module
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import QemuImg
from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import KEY_SPEC
from ansible_collections.nova.snapshots.plugins.module_utils.operations._import import Importer


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            audited=True,
            src=dict(type='list', elements='path', required=True),
            domain=dict(type='str', required=True),
            storage_pool=dict(type='str'),
            dest_dir=dict(type='path'),
            start=dict(type='bool', default=False),
            network=dict(type='str'),
            force=dict(type='bool', default=False),
            **KEY_SPEC
        ),
        mutually_exclusive=[('storage_pool', 'dest_dir')],
        required_one_of=[('storage_pool', 'dest_dir')],
        supports_check_mode=True,
    )
    p = module.params

    def action(hypervisor):
        return Importer(hypervisor, QemuImg(module.run_command)).run(
            module.check_mode, p['src'], p['domain'], storage_pool=p['storage_pool'], dest_dir=p['dest_dir'],
            start=p['start'], network=p['network'], force=p['force'], key_file=p['key_file'],
            storage_dir=p['storage_dir'])

    run_module(module, action)


if __name__ == '__main__':
    main()
