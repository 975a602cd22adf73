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
  - C(reported) and C(validated) read only; running VMs are read with shared locks.
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
    type: str
    choices: [reported, validated, consolidated, optimized]
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
        rebased. The seed's slow HDD tier.
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

# The seed's tiers: fast SSD for what the VM reads, slow HDD for the rest
- name: Place frozen layers on tiers
  nova.snapshots.nova_chain:
    domain: web-server
    state: consolidated
    active_storage: /srv/ssd/nova
    archive_storage: /srv/hdd/nova

- name: Compress the frozen layers of a shut-off VM
  nova.snapshots.nova_chain:
    domain: web-server
    state: optimized
    compression: zstd
  register: optimized
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
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nova.snapshots.plugins.module_utils.operations._chain_health import check_chain, describe_chain, live_chain, problem
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._chains import real
from ansible_collections.nova.snapshots.plugins.module_utils._common import argument_spec, run_module
from ansible_collections.nova.snapshots.plugins.module_utils.operations._consolidate import plan_chains, settle_block_jobs
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NovaError
from ansible_collections.nova.snapshots.plugins.module_utils.operations._optimize import plan_optimize
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import QemuImg
from ansible_collections.nova.snapshots.plugins.module_utils.operations._snapshots import SnapshotManager


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            store=True,
            domain=dict(type='str', required=True),
            state=dict(type='str', default='reported', choices=['reported', 'validated', 'consolidated', 'optimized']),
            disks=dict(type='list', elements='str'),
            max_chain_length=dict(type='int', default=10),
            consolidate_threshold=dict(type='float', default=80),
            method=dict(type='str', default='auto', choices=['commit', 'pull', 'auto']),
            compression=dict(type='str', default='none', choices=['zstd', 'zlib', 'none']),
            sparsify=dict(type='bool', default=True),
            archive_storage=dict(type='path'),
            active_storage=dict(type='path'),
            job_timeout=dict(type='int', default=600),
        ),
        supports_check_mode=True,
    )
    p = module.params

    def action(hypervisor):
        qemu_img = QemuImg(module.run_command)
        manager = SnapshotManager(hypervisor, p['domain'], p['storage_dir'], qemu_img, lock_timeout=p['lock_timeout'],
                                  job_timeout=p['job_timeout'])
        if p['state'] in ('consolidated', 'optimized'):
            return change(manager)
        tree = manager.load(write=False)[0]
        validate = p['state'] == 'validated'
        problems = []
        if validate:
            dom = manager.domain_xml()
            for disk in target_disks(manager, dom):
                live = live_chain(disk) if manager.domain.is_active else None
                problems += check_chain(manager.view, qemu_img, disk.target, disk.source_file, p['max_chain_length'], live)
        disks = describe_disks(manager, tree, broken_ok=validate)
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

    def change(manager):
        if p['state'] == 'optimized':
            result = manager.run(module.check_mode, lambda tree: plan_optimize(
                manager, tree, p['disks'], p['compression'], p['sparsify']))
        else:
            settle_block_jobs(manager, p['disks'], module.check_mode)
            result = manager.run(module.check_mode, lambda tree: plan_chains(
                manager, tree, p['disks'], p['max_chain_length'], p['consolidate_threshold'], p['method'],
                p['active_storage'], p['archive_storage']))
        result.pop('snapshot', None)
        result.pop('adopted', None)
        result.setdefault('space_saved', 0)
        if not module._diff:
            result.pop('diff', None)
        manager.view.invalidate()
        result['disks'] = describe_disks(manager, manager.load(write=False)[0])
        result['problems'] = []
        return result

    def target_disks(manager, dom):
        targets = manager.target_disks(dom, p['disks'])
        return [d for d in dom.disks if d.target in targets]

    def describe_disks(manager, tree, broken_ok=False):
        """Each target disk's chain; with broken_ok, a chain that cannot be read is empty (validation lists why)."""
        snapshot_of = dict((real(d.file_path), s.name) for s in tree.snapshots.values() for d in s.disk_files)
        disks = {}
        for disk in target_disks(manager, manager.domain_xml()):
            try:
                disks[disk.target] = describe_chain(manager.view, manager.qemu_img, disk.source_file, snapshot_of)
            except NovaError:
                if not broken_ok:
                    raise
                disks[disk.target] = dict(chain=[], length=0, overhead_percent=0.0)
        return disks

    run_module(module, action)


if __name__ == '__main__':
    main()
