#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: nova_snapshot_export
short_description: Export a snapshot as a portable bundle, an OVA, or its disks
version_added: 1.0.0
description:
  - Writes what a snapshot of a libvirt domain holds to O(dest) while the VM keeps running. The
    snapshot's frozen images never change, so they are read as they are; the VM is never paused.
  - C(bundle) is the collection's own portable form, read back by M(nova.snapshots.nova_snapshot_import).
    Each disk is flattened to one qcow2 holding exactly what the guest saw at the snapshot; next to
    them the domain definition, the snapshot's record, optionally its memory file, and a manifest
    C(SHA256SUMS) in C(sha256sum) format (C(sha256sum -c SHA256SUMS) verifies it).
  - C(ova) is an OVF 1.x package for VMware (DMTF DSP0243), one streamOptimized VMDK per disk and a
    C(.mf) manifest with SHA256 lines, packed as a USTAR tar with the descriptor first.
  - C(vmdk), C(qcow2) and C(raw) write the disks only (and a C(SHA256SUMS)) into the directory O(dest).
  - A snapshot whose disks are encrypted (see C(docs/encryption.md)) needs O(key_file) and is exported
    as a C(bundle) whose disks are LUKS-encrypted qcow2 images with the same key; O(decrypt) writes
    them in clear instead, and only when it is given. O(encrypt) encrypts the export of any snapshot.
  - Free space is checked before anything is written. Everything is written under C(<dest>.partial)
    and renamed into place at the end; a failure leaves nothing behind.
options:
  domain:
    description: Name of the libvirt domain (VM).
    type: str
    required: true
  name:
    description: Name of the snapshot to export.
    type: str
    required: true
  dest:
    description:
      - Where the export goes. For C(bundle), a directory, or one tar file when the path ends in C(.tar).
      - For C(ova), the C(.ova) file. For C(vmdk), C(qcow2) and C(raw), a directory.
    type: path
    required: true
  format:
    description: What to write (see the description).
    type: str
    choices: [bundle, ova, vmdk, qcow2, raw]
    default: bundle
  compatibility:
    description:
      - With O(format=ova), the VMware product the virtual hardware version is chosen for
        (C(vmware-workstation-16) is vmx-18, C(esxi-7) is vmx-17, C(esxi-8) is vmx-20). Default C(esxi-7).
    type: str
  include_config:
    description: Include the domain definition at the snapshot (a bundle's C(domain.xml); an OVA's extension section).
    type: bool
    default: true
  include_memory:
    description:
      - Include the snapshot's memory file (bundles only), so an import resumes the VM where it was.
      - The snapshot must have one (an external or memory snapshot taken while the VM ran).
    type: bool
    default: false
  compress:
    description: Compress the disks (qcow2 with zstd). A streamOptimized VMDK is always deflate-compressed.
    type: bool
    default: false
  incremental_from:
    description:
      - With O(format=bundle), a snapshot on the path from O(name) to its root. The bundle then holds only
        the clusters that differ between the two, each disk a qcow2 whose backing file is named but not
        included, and names the snapshot of the bundle it extends.
    type: str
  io_limit:
    description: Bytes per second the disk copies may read at most (qemu-img convert -r).
    type: int
  force:
    description: Replace O(dest) if it exists. Without it an existing export of the same snapshot is left as it is.
    type: bool
    default: false
extends_documentation_fragment:
  - nova.snapshots.common
  - nova.snapshots.common.store
  - nova.snapshots.encryption
  - nova.snapshots.encryption.export
  - nova.snapshots.audit
attributes:
  check_mode:
    support: full
    description: Checks the snapshot and options and reports the planned export; writes nothing.
  diff_mode:
    support: none
    description: Nothing is compared; the result lists what was written.
  idempotent:
    support: full
    description: A second run finds the export of the same snapshot at O(dest) and changes nothing.
author:
  - nova.snapshots developers (@nova-snapshots)
seealso:
  - module: nova.snapshots.nova_snapshot_import
  - module: nova.snapshots.nova_snapshot
'''

EXAMPLES = r'''
- name: Export an encrypted snapshot (the bundle's disks stay encrypted with the same key)
  nova.snapshots.nova_snapshot_export:
    domain: web-server
    name: encrypted-backup
    dest: /backup/web-server-encrypted-backup
    key_file: /secure/keys/snapshot.key

# nova snapshot export web-server checkpoint --format ova --compress --include-config --output web-server-checkpoint.ova
- name: Export a snapshot as an OVA for VMware
  nova.snapshots.nova_snapshot_export:
    domain: web-server
    name: checkpoint
    format: ova
    compress: true
    include_config: true
    dest: /srv/exports/web-server-checkpoint.ova

# nova snapshot export web-server checkpoint --format vmware --compatibility vmware-workstation-16
- name: Export for VMware Workstation 16
  nova.snapshots.nova_snapshot_export:
    domain: web-server
    name: checkpoint
    format: ova
    compatibility: vmware-workstation-16
    dest: /srv/exports/web-server-checkpoint-ws16.ova

- name: A portable bundle with the RAM state, in one tar file
  nova.snapshots.nova_snapshot_export:
    domain: web-server
    name: checkpoint
    include_memory: true
    dest: /srv/exports/web-server-checkpoint.tar

- name: Only what changed since the last full export
  nova.snapshots.nova_snapshot_export:
    domain: web-server
    name: nightly-2
    incremental_from: nightly-1
    dest: /srv/exports/web-server-nightly-2.inc
'''

RETURN = r'''
dest:
  description: The export written (or found).
  returned: always
  type: str
format:
  description: The format.
  returned: always
  type: str
snapshot:
  description: The snapshot exported.
  returned: always
  type: str
files:
  description: The files of the export, in archive order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: File name inside the export.
      type: str
    size:
      description: Its size in bytes.
      type: int
    sha256:
      description: Its SHA-256 (null for the manifest itself).
      type: str
bytes_written:
  description: Bytes of the export (the archive, or the files of the directory); 0 when nothing was written.
  returned: always
  type: int
seconds:
  description: Seconds the export took.
  returned: always
  type: float
changed_bytes:
  description: For an incremental bundle, bytes of the disk clusters that differ from O(incremental_from); else null.
  returned: always
  type: int
bundle_id:
  description: Id of the bundle (bundles only).
  returned: always
  type: str
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
from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import EXPORT_SPEC
from ansible_collections.nova.snapshots.plugins.module_utils.operations._export import Exporter
from ansible_collections.nova.snapshots.plugins.module_utils.operations._snapshots import SnapshotManager


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            store=True, audited=True,
            domain=dict(type='str', required=True),
            name=dict(type='str', required=True),
            dest=dict(type='path', required=True),
            format=dict(type='str', default='bundle', choices=['bundle', 'ova', 'vmdk', 'qcow2', 'raw']),
            compatibility=dict(type='str'),
            include_config=dict(type='bool', default=True),
            include_memory=dict(type='bool', default=False),
            compress=dict(type='bool', default=False),
            incremental_from=dict(type='str'),
            io_limit=dict(type='int'),
            force=dict(type='bool', default=False),
            **EXPORT_SPEC
        ),
        supports_check_mode=True,
    )
    p = module.params

    def action(hypervisor):
        manager = SnapshotManager(hypervisor, p['domain'], p['storage_dir'], QemuImg(module.run_command),
                                  lock_timeout=p['lock_timeout'])
        return Exporter(manager).run(module.check_mode, p['name'], p['dest'], fmt=p['format'],
                                     include_config=p['include_config'], include_memory=p['include_memory'],
                                     compress=p['compress'], incremental_from=p['incremental_from'],
                                     io_limit=p['io_limit'], force=p['force'], compatibility=p['compatibility'],
                                     crypt=dict((k, p[k]) for k in EXPORT_SPEC))

    run_module(module, action)


if __name__ == '__main__':
    main()
