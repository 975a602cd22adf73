#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: nova_snapshot
short_description: Create, revert and delete snapshots of libvirt domains
version_added: 1.0.0
description:
  - Takes internal, external, memory and disk-only snapshots of a libvirt/QEMU domain, running
    (live) or shut off, atomically across its disks.
  - Reverts to any of them. Internal snapshots revert through libvirt; external, memory and
    disk-only snapshots are reverted by the collection (libvirt 9.0 cannot), by starting new
    overlays on the snapshot's frozen images and restoring RAM from its memory file when it has one.
  - Deletes any snapshot without losing what other snapshots or the running VM needs; the frozen
    layer is merged into the image above it (block pull or commit while the VM runs, qemu-img
    rebase when it is off), and libvirt's metadata is kept in step.
  - Keeps a crash-safe metadata store under O(storage_dir); snapshots made outside the collection
    (with virsh) are adopted into it.
  - Encrypts snapshots with O(encrypt) and O(key_file) (LUKS qcow2 overlays, AES-256-GCM memory
    files that never reach a disk in clear) and compresses memory files with O(memory_compression);
    see C(docs/encryption.md).
options:
  domain:
    description: Name of the libvirt domain (VM).
    type: str
    required: true
  name:
    description:
      - Name of the snapshot, unique per domain. It becomes libvirt's snapshot name.
      - No C(/), no leading C(.), no NUL, no XML metacharacters, at most 255 bytes.
    type: str
    required: true
  state:
    description:
      - C(present) takes the snapshot unless it exists.
      - C(absent) deletes it (see O(children)).
      - C(reverted) returns the VM to it, discarding what happened since.
    type: str
    choices: [present, absent, reverted]
    default: present
  snapshot_type:
    description:
      - C(internal) - stored inside each qcow2 disk, with RAM when the VM runs.
      - C(external) - a new overlay per disk on the frozen image, with RAM in a memory file when the VM runs.
      - C(memory) - like C(external), but RAM is required (the VM must be running or paused).
      - C(disk_only) - external overlays, never RAM (crash-consistent, or quiesced with O(quiesce)).
      - When the snapshot exists and this is not given, its type is not compared. New snapshots default to C(external).
      - A domain's history is either internal or not; mixing is refused with a clear message.
    type: str
    choices: [internal, external, memory, disk_only]
  description:
    description: Free text kept with the snapshot (libvirt's description).
    type: str
  tags:
    description: Labels to find the snapshot by (M(nova.snapshots.nova_snapshot_info) filters on them).
    type: list
    elements: str
  category:
    description: A category to find the snapshot by, for example C(maintenance).
    type: str
  disks:
    description:
      - Target names of the disks to include (for example V(vda)). Default is every writable disk.
    type: list
    elements: str
  quiesce:
    description:
      - Freeze the guest's filesystems through the QEMU guest agent while the snapshot is taken.
      - Needs a running guest with a responding agent, and a type other than C(internal).
    type: bool
    default: false
  after:
    description:
      - With O(state=reverted), the state to leave the VM in. C(snapshot) is the state the snapshot
        recorded (C(running) or C(paused) when it holds RAM, else C(shutoff)).
      - C(running) or C(paused) for a snapshot without RAM boots the VM from the snapshot's disks.
    type: str
    choices: [snapshot, running, paused, shutoff]
    default: snapshot
  force:
    description:
      - With O(state=reverted), revert even if the VM was reverted to this snapshot last and is in the
        requested state (by default that counts as already done, so a re-run is not a change).
    type: bool
    default: false
  children:
    description:
      - With O(state=absent), what happens to the snapshot's children. C(keep) re-parents them to the
        deleted snapshot's parent without losing any data; C(delete) deletes them too.
    type: str
    choices: [keep, delete]
    default: keep
  checksum:
    description:
      - With O(state=present), when a snapshot is taken, record the checksum of each file it freezes
        (frozen images, memory file) for M(nova.snapshots.nova_snapshot_verify). C(none) records
        nothing; the snapshot then gets its checksums at its first verification.
      - C(blake3) needs the C(blake3) Python package on the hypervisor.
    type: str
    choices: [none, sha256, blake3]
    default: none
    version_added: 1.0.0
  job_timeout:
    description: Seconds to wait for a block job (pull or commit while the VM runs) before aborting it.
    type: int
    default: 600
extends_documentation_fragment:
  - nova.snapshots.common
  - nova.snapshots.common.store
  - nova.snapshots.encryption
  - nova.snapshots.encryption.create
  - nova.snapshots.audit
  - nova.snapshots.audit.permissions
  - nova.snapshots.block_jobs
attributes:
  check_mode:
    support: full
    description: Reports what would change (O(state) and the planned actions) and changes nothing.
  diff_mode:
    support: full
    description: Shows the snapshot (or the current snapshot and VM state) before and after.
  idempotent:
    support: full
    description: >-
      A second identical task reports no change. For O(state=reverted) that means the VM was last
      reverted to the same snapshot and is still in the requested state; use O(force) to revert again.
author:
  - nova.snapshots developers (@nova-snapshots)
seealso:
  - module: nova.snapshots.nova_snapshot_info
'''

EXAMPLES = r'''
# nova snapshot create web-server checkpoint --tags update,security --category maintenance
- name: Take a live external snapshot with RAM before an update
  nova.snapshots.nova_snapshot:
    domain: web-server
    name: before-update-20261125-001
    snapshot_type: memory
    description: Before major update
    tags: [update, security]
    category: maintenance

# nova snapshot create web-server encrypted-backup --encrypt --key-file /secure/keys/snapshot.key
- name: An encrypted snapshot with RAM (the key file is readable by root only)
  nova.snapshots.nova_snapshot:
    domain: web-server
    name: encrypted-backup
    snapshot_type: memory
    encrypt: true
    key_file: /secure/keys/snapshot.key

- name: Revert to it; encrypted snapshots need the key to be reverted or deleted
  nova.snapshots.nova_snapshot:
    domain: web-server
    name: encrypted-backup
    state: reverted
    key_file: /secure/keys/snapshot.key

- name: A snapshot with RAM whose memory file is zstd-compressed
  nova.snapshots.nova_snapshot:
    domain: web-server
    name: compact
    snapshot_type: memory
    memory_compression: zstd

- name: A quiesced disk-only snapshot of the data disk only
  nova.snapshots.nova_snapshot:
    domain: db-server
    name: nightly
    snapshot_type: disk_only
    disks: [vdb]
    quiesce: true

# nova snapshot revert web-server checkpoint
- name: Go back to it and keep the VM running
  nova.snapshots.nova_snapshot:
    domain: web-server
    name: before-update-20261125-001
    state: reverted
    after: running

- name: Delete a snapshot in the middle of the history; its children keep their data
  nova.snapshots.nova_snapshot:
    domain: web-server
    name: before-update-20261125-001
    state: absent
'''

RETURN = r'''
snapshot:
  description:
    - The snapshot's record (the nova design's VmSnapshot). For O(state=absent), the record as it was before
      the delete, or null when there was no such snapshot.
  returned: always
  type: dict
  contains:
    id:
      description: Unique id, also the name of its directory in the store.
      type: str
    vm_name:
      description: The domain.
      type: str
    name:
      description: The snapshot's name.
      type: str
    description:
      description: Its description.
      type: str
    snapshot_type:
      description: C(internal), C(external), C(memory) or C(disk_only).
      type: str
    created_at:
      description: Creation time (ISO 8601 UTC).
      type: str
    creation_time:
      description: Creation time (seconds since the epoch).
      type: int
    size_bytes:
      description: Bytes on disk of its frozen images and memory file.
      type: int
    vm_state:
      description: The VM state it recorded (C(running), C(paused), C(shutoff), C(disk-snapshot)).
      type: str
    parent_snapshot:
      description: Id of the parent snapshot, or null.
      type: str
    parent_name:
      description: Name of the parent snapshot, or null.
      type: str
    children:
      description: Ids of the child snapshots.
      type: list
      elements: str
    is_current:
      description: Whether it is the current snapshot.
      type: bool
    disk_files:
      description: Per disk, the image that holds the disk's state at the snapshot.
      type: list
      elements: dict
      contains:
        device:
          description: Target device.
          type: str
        file_path:
          description: The image (frozen for external types; the qcow2 holding an internal snapshot).
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
    memory_file:
      description: The RAM state file, or null.
      type: str
    config_snapshot:
      description: File with libvirt's snapshot XML (with the domain configuration then).
      type: str
    tags:
      description: Its tags.
      type: list
      elements: str
    category:
      description: Its category.
      type: str
    origin:
      description: C(nova) when the collection made it, C(adopted) when it was found in libvirt.
      type: str
    quiesced:
      description: Whether guest filesystems were frozen for it.
      type: bool
    encrypted:
      description: Whether its overlays are LUKS-encrypted and its memory file encrypted (O(encrypt)).
      type: bool
    memory_compression:
      description: C(zstd) when its memory file is compressed, else null.
      type: str
  sample:
    id: 20261125T204700-3fa2b1
    name: before-update
    snapshot_type: memory
    vm_state: running
actions:
  description: What the task did, or would do in check mode.
  returned: always
  type: list
  elements: str
  sample: ["take memory snapshot before-update of web-server (disks vda, vdb, with RAM)"]
adopted:
  description: Snapshots found in libvirt but not in the store, now adopted into it.
  returned: always
  type: list
  elements: str
checksums:
  description: With O(checksum), the checksums recorded for the new snapshot's files (path, size, algorithm, digest).
  returned: when a snapshot was taken with O(checksum) other than C(none)
  type: list
  elements: dict
  version_added: 1.0.0
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
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._checksum import BLAKE3_IMPORT_ERROR, HAS_BLAKE3
from ansible_collections.nova.snapshots.plugins.module_utils.operations._create import plan_create
from ansible_collections.nova.snapshots.plugins.module_utils.operations._delete import plan_delete
from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import ENCRYPTION_SPEC, missing_library
from ansible_collections.nova.snapshots.plugins.module_utils.operations._permissions import PERMISSIONS_SPEC, with_permissions
from ansible_collections.nova.snapshots.plugins.module_utils.operations._revert import plan_revert
from ansible_collections.nova.snapshots.plugins.module_utils.operations._verify import checksum_finisher


def plan(manager, tree, p):
    if p['state'] == 'present':
        return with_permissions(manager, tree, plan_create(
            manager, tree, p['name'], p['snapshot_type'], description=p['description'], tags=p['tags'],
            category=p['category'], disks=p['disks'], quiesce=p['quiesce'], key_file=p['key_file'],
            encrypt=p['encrypt'], memory_compression=p['memory_compression'], luks_iter_time=p['luks_iter_time']), p['name'], p['owner'], p['group'], p['mode'])
    if p['state'] == 'reverted':
        return plan_revert(manager, tree, p['name'], after=p['after'], force=p['force'], key_file=p['key_file'])
    return plan_delete(manager, tree, p['name'], children=p['children'], key_file=p['key_file'])


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            store=True, audited=True,
            domain=dict(type='str', required=True),
            name=dict(type='str', required=True),
            state=dict(type='str', default='present', choices=['present', 'absent', 'reverted']),
            snapshot_type=dict(type='str', choices=['internal', 'external', 'memory', 'disk_only']),
            description=dict(type='str'),
            tags=dict(type='list', elements='str'),
            category=dict(type='str'),
            disks=dict(type='list', elements='str'),
            quiesce=dict(type='bool', default=False),
            after=dict(type='str', default='snapshot', choices=['snapshot', 'running', 'paused', 'shutoff']),
            force=dict(type='bool', default=False),
            children=dict(type='str', default='keep', choices=['keep', 'delete']),
            job_timeout=dict(type='int', default=600),
            checksum=dict(type='str', default='none', choices=['none', 'sha256', 'blake3']),
            io_limit=dict(type='int'),
            parallel_disks=dict(type='bool', default=False),
            **dict(ENCRYPTION_SPEC, **PERMISSIONS_SPEC)
        ),
        required_if=[('encrypt', True, ['key_file'])],
        supports_check_mode=True,
    )
    missing = missing_library(module.params)
    if missing:
        module.fail_json(msg=missing_required_lib(missing[0]), exception=missing[1])
    if module.params['checksum'] == 'blake3' and not HAS_BLAKE3:
        module.fail_json(msg=missing_required_lib('blake3'), exception=BLAKE3_IMPORT_ERROR)
    run_plan(module, plan, finish=checksum_finisher(module.params, module.check_mode))    # nova_snapshot_verify


if __name__ == '__main__':
    main()
