#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: nova_snapshot_verify
short_description: Verify snapshots (checksums, image checks, metadata), repair them, export health metrics
version_added: 1.0.0
description:
  - Checks every file a snapshot needs - it exists, has the size and checksum recorded for it, each
    qcow2 layer passes C(qemu-img check) (with C(-U) for images in use), each backing link points at
    the recorded image with the right format and an absolute path, and a memory file is a complete
    libvirt save image (C(LibvirtQemudSave), not the C(LibvirtQemudPart) of an unfinished save).
  - Checks that the store, libvirt's snapshot metadata and the files agree (snapshots made with
    C(virsh), metadata deleted with C(virsh snapshot-delete --metadata), orphan directories, an
    interrupted delete), and that the tree's parents and children are consistent.
  - Checksums are kept per snapshot in C(<storage_dir>/<domain>/snapshots/<id>/checksums.json). A
    snapshot taken without one (see O(nova.snapshots.nova_snapshot#module:checksum))
    gets its checksums at its first verification and is reported C(unverified), "trusted on first
    verification", until the next.
  - With O(state=repaired) fixes what can be fixed without changing what any snapshot shows; see
    O(state).
  - Encrypted snapshots (see C(docs/encryption.md)) are verified with O(key_file) - their checksums
    are of the files' bytes (no key needed), while C(qemu-img check) opens each LUKS layer with the
    key. Without O(key_file) a domain with encrypted snapshots or disks is refused, as is a wrong key,
    before anything is read or written. O(state=repaired) on an encrypted domain needs O(key_file) too - a
    leak repair rewrites a LUKS layer's copy with the key, a moved layer's images are rebased with it, a
    recreated snapshot's overlays are LUKS-encrypted with the same key, and a layer restored from an
    identical copy is its bytes (ciphertext). Rebuilding a LUKS layer from an export bundle is not
    done yet (noted in C(repairs)).
  - The C(nova.snapshots.snapshot_verification) role runs it on a schedule (systemd timer or cron) and
    writes the metrics file.
options:
  domain:
    description:
      - The domain whose snapshots to verify. Omitted, every domain that has a store under O(storage_dir).
    type: str
  name:
    description:
      - A snapshot name, or a glob (C(nightly-*)). Omitted, every snapshot.
      - An exact name the domain does not have is an error.
    type: str
  state:
    description:
      - C(verified) checks and reports; it writes only checksum records (and O(metrics_file)).
      - C(repaired) also repairs, each step crash-safe and idempotent, never touching what is fine -
        leaked clusters are freed on a copy (C(qemu-img check -r leaks)), proven equal with
        C(qemu-img compare) and swapped in (never in place on an image the running VM writes);
        missing libvirt metadata is redefined from the store's saved XML; snapshots made with virsh
        are adopted; a moved file found by checksum under O(search_paths) is repointed (records and the
        backing link of the image above it); a corrupt file is restored from a verified copy under
        O(search_paths) (an identical copy found by checksum, or a full export bundle of the snapshot,
        rebuilt into the layer and proven equal with C(qemu-img compare)), never under a running VM;
        otherwise a corrupt snapshot without children is recreated from its parent when
        O(recreate=from_parent). A corrupt snapshot with children and no copy is refused with the
        list of snapshots it affects.
    type: str
    choices: [verified, repaired]
    default: verified
  checksum:
    description:
      - The checksum algorithm. C(blake3) needs the C(blake3) Python package on the hypervisor.
      - A file recorded with another algorithm is re-recorded (and reported unverified) once.
    type: str
    choices: [sha256, blake3]
    default: sha256
  fail_on_problems:
    description:
      - Fail the task, with a message naming each broken snapshot, when anything is wrong.
      - C(false) returns the same report without failing (for monitoring plays).
    type: bool
    default: true
  metrics_file:
    description:
      - Write a Prometheus textfile-collector file here (node_exporter's format), atomically - per
        domain the snapshot count, bytes, oldest and newest age, longest chain; per snapshot the last
        verification result and time. Its directory must exist and be writable. Not written in check mode.
    type: path
  io_limit:
    description: Bytes per second the checksum reads may use (all files of the run together). Default no limit.
    type: int
  search_paths:
    description:
      - With O(state=repaired), directories to search (recursively) for a missing file by its recorded size and checksum,
        and for a verified copy of a corrupt one (the same file, or a full export bundle of its snapshot).
    type: list
    elements: path
  recreate:
    description:
      - With O(state=repaired), C(from_parent) replaces a corrupt snapshot that has no children by a new
        snapshot of its parent's state under the same name. What the snapshot held beyond its parent is
        lost; the result says so (RV(snapshots[].lost)) and the store records C(recreated_from).
      - C(never) (the default) only reports it.
    type: str
    choices: [never, from_parent]
    default: never
extends_documentation_fragment:
  - nova.snapshots.common
  - nova.snapshots.common.store
  - nova.snapshots.encryption
  - nova.snapshots.audit
attributes:
  check_mode:
    support: full
    description: Verifies and plans every repair (RV(snapshots[].repairs) say "would ..."); writes nothing.
  diff_mode:
    support: none
    description: Returns no diff; RV(snapshots[].repairs) say what changed.
  idempotent:
    support: full
    description: A repaired problem is not found again; a second run repairs nothing. Recording first checksums is a change.
requirements:
  - blake3 (Python package, on the managed node, for O(checksum=blake3))
author:
  - nova.snapshots developers (@nova-snapshots)
seealso:
  - module: nova.snapshots.nova_snapshot
'''

EXAMPLES = r'''
# nova snapshot verify web-server checkpoint
- name: Verify one snapshot
  nova.snapshots.nova_snapshot_verify:
    domain: web-server
    name: checkpoint

- name: Nightly check of every domain for monitoring, without failing the play
  nova.snapshots.nova_snapshot_verify:
    checksum: blake3
    fail_on_problems: false
    metrics_file: /var/lib/prometheus/node-exporter/nova_snapshots.prom
    io_limit: 104857600

- name: Verify a domain's encrypted snapshots (qemu-img check opens the LUKS layers with the key)
  nova.snapshots.nova_snapshot_verify:
    domain: web-server
    key_file: /secure/keys/snapshot.key

# nova snapshot repair web-server; nova snapshot recreate web-server checkpoint --from-parent
- name: Repair what can be repaired, recreating a corrupt leaf from its parent
  nova.snapshots.nova_snapshot_verify:
    domain: web-server
    state: repaired
    search_paths: [/srv/images]
    recreate: from_parent

- name: Repair an encrypted domain's snapshots (LUKS layers opened and written with the key)
  nova.snapshots.nova_snapshot_verify:
    domain: web-server
    state: repaired
    key_file: /secure/keys/snapshot.key
    search_paths: [/srv/backup/web-server]
'''

RETURN = r'''
snapshots:
  description: Per verified snapshot, oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    domain:
      description: Its domain.
      type: str
    id:
      description: Its id.
      type: str
    name:
      description: Its name.
      type: str
    status:
      description: C(ok), C(failed) (see RV(snapshots[].problems)) or C(unverified) (trusted on first verification).
      type: str
    trusted_on_first_verification:
      description: True when some file had no recorded checksum before this run.
      type: bool
    problems:
      description: What is wrong, each with C(kind), C(problem), C(file) and C(fix).
      type: list
      elements: dict
    checksums:
      description: Per file, C(file), C(algorithm), C(digest), C(verdict) (C(match), C(mismatch), C(first), ...) and C(note).
      type: list
      elements: dict
    bytes_read:
      description: Bytes read to checksum its files.
      type: int
    seconds:
      description: Seconds its verification took.
      type: float
    repairs:
      description: What O(state=repaired) did or, in check mode, would do, or why it did not.
      type: list
      elements: str
    lost:
      description: For a snapshot recreated from its parent, what was lost; else null.
      type: str
    notes:
      description: What could not be checked conclusively (for example C(qemu-img check) of an image the running VM writes).
      type: list
      elements: str
summary:
  description: Counts over the run.
  returned: always
  type: dict
  contains:
    snapshots:
      description: Snapshots verified.
      type: int
    ok:
      description: Snapshots verified ok.
      type: int
    failed:
      description: Snapshots with problems.
      type: int
    unverified:
      description: Snapshots trusted on first verification.
      type: int
    problems:
      description: Problems found, with the domain-level ones.
      type: int
    domain_problems:
      description: Problems outside any one snapshot (unrecorded virsh snapshots, orphan directories, interrupted deletes).
      type: list
      elements: dict
    failed_snapshots:
      description: C(domain/name) of each failed snapshot.
      type: list
      elements: str
    bytes_read:
      description: Bytes read.
      type: int
    seconds:
      description: Seconds spent verifying.
      type: float
  sample: {snapshots: 3, ok: 2, failed: 1, unverified: 0, problems: 1, bytes_read: 73400320}
metrics_file:
  description: The metrics file written, or null.
  returned: always
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

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.nova.snapshots.plugins.module_utils._common import argument_spec, run_module, snapshot_manager
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._checksum import BLAKE3_IMPORT_ERROR, HAS_BLAKE3
from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import KEY_SPEC
from ansible_collections.nova.snapshots.plugins.module_utils.operations._verify import run_verify


def main():
    module = AnsibleModule(argument_spec=argument_spec(
        store=True, audited=True, domain=dict(type='str'), name=dict(type='str'),
        state=dict(type='str', default='verified', choices=['verified', 'repaired']),
        checksum=dict(type='str', default='sha256', choices=['sha256', 'blake3']),
        fail_on_problems=dict(type='bool', default=True), metrics_file=dict(type='path'),
        io_limit=dict(type='int'), search_paths=dict(type='list', elements='path'),
        recreate=dict(type='str', default='never', choices=['never', 'from_parent']), **KEY_SPEC
    ), supports_check_mode=True)
    p = module.params
    if p['checksum'] == 'blake3' and not HAS_BLAKE3:
        module.fail_json(msg=missing_required_lib('blake3'), exception=BLAKE3_IMPORT_ERROR)
    run_module(module, lambda hypervisor: run_verify(lambda d: snapshot_manager(module, hypervisor, d), p,
                                                     module.check_mode))


if __name__ == '__main__':
    main()
