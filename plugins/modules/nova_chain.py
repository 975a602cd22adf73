#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: nova_chain
short_description: Show, check, consolidate and optimize the backing chains of a libvirt domain's disks
version_added: 1.0.0
description:
  - Shows each disk's backing chain, from the image the VM writes to down to the base image, with
    every file's format, sizes, depth and the snapshot it belongs to, and how much more space the
    chain takes than one flattened image would.
  - With O(state=validated), checks the chains. Every backing reference must exist, be an absolute
    path and record its format. C(qemu-img check) must be clean (leaked clusters are told apart from
    corruption). libvirt's XML, the collection's snapshot records and the files must agree. Each
    problem names the file and the fix. A chain longer than O(max_chain_length) gives the warning
    "Snapshot chain length exceeds recommended limit".
  - With O(state=consolidated), shortens a chain that is longer than O(max_chain_length) or takes
    more than O(consolidate_threshold) percent of extra space, live (block pull, block commit with
    pivot) or offline (qemu-img rebase, commit), without losing a restore point. Layers that no
    snapshot, branch or other domain needs are merged away with O(method). If the chain is still
    too long, it is made of restore points; the VM's own image then takes in the data of the layers
    nearest to it, so the VM reads through at most O(max_chain_length) images, while every snapshot
    keeps its own images (this costs the space of the copied data). Free space is measured
    (C(qemu-img measure)) before anything is written.
  - With O(state=optimized), rewrites frozen layers the collection created with O(compression) or
    sparsified (zeros dropped) into a new file, proves it equal with C(qemu-img compare), and renames
    it over the old one. Layers the running VM reads are skipped (and listed).
  - O(archive_storage) and O(active_storage) (with O(state=consolidated)) place the collection's frozen
    layers on storage tiers, rebasing the images above them.
  - With O(state=diagnosed), a performance report (the nova design's C(diagnose --performance)). Per disk
    it gives the chain depth and how many layers reads come from (C(qemu-img map)), each image's
    fragmentation (C(qemu-img check)), the storage each image lives on (rotational or not, the store or
    a tier), a block job running, and the guest's disk settings (cache, io, discard, bus). Each finding
    comes with its fix, such as "Snapshot chain length exceeds recommended limit".
  - C(reported), C(validated) and C(diagnosed) read only; running VMs are read with shared locks.
  - On a domain with encrypted snapshots (see C(docs/encryption.md)), every state needs O(key_file)
    (C(qemu-img map) and C(check) open each LUKS layer with it). Block jobs run in QEMU, which has the domain's secret;
    C(qemu-img) opens every LUKS layer with the key. Encrypted data is never written in clear. A merge
    that would copy a LUKS layer into a clear image takes the other direction. If neither direction
    works, the run is left and the chain's C(reason) says why; with an explicit O(method), the task is
    refused instead. A rewritten (optimized) LUKS layer is LUKS again with the same key, sparsified but
    never compressed (qcow2 cannot compress encrypted clusters). A tier move copies a LUKS file byte
    for byte.
options:
  domain:
    description: Name of the libvirt domain (VM).
    type: str
    required: true
  state:
    description:
      - C(reported) reports the chains (the design's C(info); ansible-test reserves that word for C(_info) modules).
      - C(validated) also checks them, and fails listing every error (warnings are returned and shown).
      - C(consolidated) shortens chains that are too long or too wasteful.
      - C(optimized) recompresses or sparsifies frozen layers.
      - C(diagnosed) reports what slows the disks down, with fixes (reads only).
    type: str
    choices: [reported, validated, consolidated, optimized, diagnosed]
    default: reported
  disks:
    description: Target names of the disks to look at. Default is every writable disk.
    type: list
    elements: str
  max_chain_length:
    description: The longest chain (images, the active one included) that is not warned about.
    type: int
    default: 10
  consolidate_threshold:
    description:
      - With O(state=consolidated), a chain no longer than O(max_chain_length) is consolidated when it
        takes more than this many percent of space beyond what one flattened image would.
    type: float
    default: 80
  method:
    description:
      - How anonymous layers are merged. C(pull) copies them up into the image above (a block pull
        live, a safe C(qemu-img rebase) offline). C(commit) copies the image above down into them (a
        block commit, with a pivot when the VM writes to that image; C(qemu-img commit) offline), and
        the lower image takes its place. C(auto) copies whichever holds less data.
      - libvirt pulls only into the image the VM writes to, so below it a running VM is always committed.
    type: str
    choices: [commit, pull, auto]
    default: auto
  compression:
    description: With O(state=optimized), how frozen layers are compressed (qcow2 compressed clusters).
    type: str
    choices: [zstd, zlib, none]
    default: none
  sparsify:
    description: With O(state=optimized), drop zeroed data from frozen layers.
    type: bool
    default: true
  archive_storage:
    description:
      - With O(state=consolidated), a directory for frozen layers that the VM's current chain does not
        need (other branches, old restore points). They are moved there and the images above them are
        rebased. The slow HDD tier of the nova design.
    type: path
  active_storage:
    description:
      - With O(state=consolidated), a directory for the frozen layers the VM's current chain reads.
        Layers on another tier are moved back here while the VM is shut off (a running VM holds them open).
    type: path
  job_timeout:
    description: Seconds a block job may take before it is aborted and the task fails.
    type: int
    default: 600
extends_documentation_fragment:
  - nova.snapshots.common
  - nova.snapshots.common.store
  - nova.snapshots.audit
  - nova.snapshots.block_jobs
  - nova.snapshots.encryption
attributes:
  check_mode:
    support: full
    description: Reports what would be merged, moved or rewritten, and changes nothing.
  diff_mode:
    support: full
    description: Chain lengths (or the layers to rewrite) before and after.
  idempotent:
    support: full
    description: A consolidated chain, an optimized layer or a placed layer is left alone when run again.
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

# Keep the chain short while the VM runs; snapshots stay restorable
- name: Consolidate
  nova.snapshots.nova_chain:
    domain: web-server
    state: consolidated
    max_chain_length: 10
    consolidate_threshold: 80
    method: auto

# The nova design's tiers: fast SSD for what the VM reads, slow HDD for the rest
- name: Place frozen layers on tiers
  nova.snapshots.nova_chain:
    domain: web-server
    state: consolidated
    active_storage: /srv/ssd/nova
    archive_storage: /srv/hdd/nova

# nova snapshot diagnose web-server --performance
- name: What slows the disks down
  nova.snapshots.nova_chain:
    domain: web-server
    state: diagnosed
  register: diagnosis

# nova snapshot create web-server checkpoint --io-limit 50MB/s
- name: Consolidate at most 50 MiB/s, so the guest keeps its disk bandwidth
  nova.snapshots.nova_chain:
    domain: web-server
    state: consolidated
    io_limit: 52428800

- name: Compress the frozen layers of a shut-off VM
  nova.snapshots.nova_chain:
    domain: web-server
    state: optimized
    compression: zstd
  register: optimized

- name: Consolidate a domain whose snapshots are encrypted
  nova.snapshots.nova_chain:
    domain: web-server
    state: consolidated
    max_chain_length: 3
    key_file: /secure/keys/snapshot.key
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
        backing_file:
          description: The image below it (null for the base image).
          type: str
        backing_format:
          description: The format its header records for the backing file.
          type: str
    base_image:
      description: The image at the bottom of the chain.
      type: str
    length:
      description: Number of images in the chain.
      type: int
    overhead_percent:
      description: Extra space the chain takes over one flattened image, in percent.
      type: float
  sample: {"vda": {"length": 3, "overhead_percent": 12.5, "chain": []}}
diagnosis:
  description:
    - With O(state=diagnosed), per disk target C(chain_length), C(layers_read) (how many images reads
      come from), C(bytes_read_per_depth), C(map_extents), C(base_image), C(block_job) (C(type), C(cur),
      C(end), or null) and C(settings) (C(cache), C(io), C(discard), C(detect_zeroes), C(iothread), C(bus)).
    - C(images) lists each image with C(file), C(depth), C(format), C(actual_size), C(snapshot),
      C(allocated_clusters), C(fragmented_clusters), C(fragmentation_percent) and C(storage)
      (C(device), C(rotational), C(directory)).
  returned: when O(state=diagnosed)
  type: dict
problems:
  description: What is wrong (empty with O(state=reported)); with O(state=diagnosed), also C(info) findings.
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
      description: C(error), C(warning) or (O(state=diagnosed)) C(info).
      type: str
    problem:
      description: What is wrong.
      type: str
    fix:
      description: How to fix it.
      type: str
space_saved:
  description:
    - Bytes freed (0 for C(reported) and C(validated)). Negative when consolidation copied data into
      the VM's image to keep restore points.
  returned: always
  type: int
merged:
  description: With O(state=consolidated), each merge done (or, in check mode, planned).
  returned: when O(state=consolidated)
  type: list
  elements: dict
  contains:
    disk:
      description: The disk target.
      type: str
    method:
      description: C(pull) or C(commit).
      type: str
    layers:
      description: The images whose data was merged away (or, for a pull into the VM's image, copied up).
      type: list
      elements: str
    into:
      description: The image that holds the merged data.
      type: str
    replaces:
      description: For a commit, the image that C(into) replaced in the chain.
      type: str
moved:
  description: With O(archive_storage) or O(active_storage), each layer moved (C(file), C(to)).
  returned: when O(state=consolidated)
  type: list
  elements: dict
left_behind:
  description: Images the collection did not create that the VM no longer uses; never deleted, listed for you.
  returned: when O(state=consolidated) changed something
  type: list
  elements: str
optimized:
  description: With O(state=optimized), each layer rewritten (C(file), C(saved) bytes).
  returned: when O(state=optimized)
  type: list
  elements: dict
skipped:
  description: With O(state=optimized), layers left alone and why (C(file), C(reason)).
  returned: when O(state=optimized)
  type: list
  elements: dict
actions:
  description: What was done (or would be, in check mode), in words.
  returned: when O(state=consolidated) or O(state=optimized)
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

from ansible_collections.nova.snapshots.plugins.module_utils._common import argument_spec, run_module, snapshot_manager
from ansible_collections.nova.snapshots.plugins.module_utils.operations._chain_health import chain_report
from ansible_collections.nova.snapshots.plugins.module_utils.operations._consolidate import chain_change
from ansible_collections.nova.snapshots.plugins.module_utils.operations._diagnose import diagnose
from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import KEY_SPEC, open_chains


def task(module, hypervisor):
    p = module.params
    manager = snapshot_manager(module, hypervisor)
    if p['state'] in ('reported', 'validated', 'diagnosed'):
        # qemu-img map and check open every layer: an encrypted domain's with the key, refused without it
        open_chains(manager, p['key_file'], manager.load(write=False)[0], 'reading its chains')
    if p['state'] in ('reported', 'validated'):
        return chain_report(manager, p['disks'], p['state'] == 'validated', p['max_chain_length'], warn=module.warn)
    if p['state'] == 'diagnosed':
        result = diagnose(manager, p['disks'], p['max_chain_length'])
        for w in [x for x in result['problems'] if x['severity'] == 'warning']:
            module.warn('%s: %s (fix: %s)' % (w['disk'], w['problem'], w['fix']))
        return result
    return chain_change(manager, module.check_mode, p['state'], p['disks'], p['max_chain_length'],
                        p['consolidate_threshold'], p['method'], p['active_storage'], p['archive_storage'],
                        p['compression'], p['sparsify'], p['key_file'])


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            store=True, audited=True,
            domain=dict(type='str', required=True),
            state=dict(type='str', default='reported', choices=['reported', 'validated', 'consolidated', 'optimized', 'diagnosed']),
            disks=dict(type='list', elements='str'),
            max_chain_length=dict(type='int', default=10),
            consolidate_threshold=dict(type='float', default=80),
            method=dict(type='str', default='auto', choices=['commit', 'pull', 'auto']),
            compression=dict(type='str', default='none', choices=['zstd', 'zlib', 'none']),
            sparsify=dict(type='bool', default=True),
            archive_storage=dict(type='path'),
            active_storage=dict(type='path'),
            job_timeout=dict(type='int', default=600),
            io_limit=dict(type='int'),
            parallel_disks=dict(type='bool', default=False),
            **KEY_SPEC
        ),
        supports_check_mode=True,
    )
    run_module(module, lambda hypervisor: task(module, hypervisor))


if __name__ == '__main__':
    main()
