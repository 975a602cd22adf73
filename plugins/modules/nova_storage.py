#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: nova_storage
short_description: Analyze and free the space of the snapshot store; clear a domain's stale lock
version_added: 1.0.0
description:
  - With O(state=analyzed), reports where the store's space goes, per domain and snapshot. It gives the
    bytes on disk and the bytes only that snapshot holds, that is what deleting it frees (its memory
    file, and its frozen layer less the data the safe delete copies into the image above). It also
    gives the shared rest, the memory files, and recommendations (consolidate, compress, move to
    archive, delete old policy snapshots) with the bytes each saves. It changes nothing.
  - With O(state=cleaned), deletes snapshots until the filesystem of O(path) (default O(storage_dir))
    has O(free_space) free. Only snapshots a policy made (M(nova.snapshots.nova_policy)) and that are not
    protected are deleted, unless O(include_manual) or O(include_protected) say otherwise. Those a
    policy's retention would prune anyway go first, then the oldest. Each one goes through the safe
    delete of M(nova.snapshots.nova_snapshot) (children kept, nothing a later snapshot, branch or the VM
    needs is lost). The plan comes from estimates and is shown in check mode and diff. The run
    measures the free space after each delete and stops as soon as the target is met. When the target
    cannot be met, the task fails and says how far it got (or, when even every allowed delete would
    not be enough, deletes nothing) and what holds the rest.
  - With O(state=unlocked), clears the lock of O(domain) when its holder is gone, that is when its pid
    no longer exists on this host or the host was rebooted since it was taken. When the holder is
    alive, or ran on another host, it refuses and names the holder (operation, pid, host, since). The
    operation the holder was doing is finished or rolled back by the next task on the domain, from
    the intent it wrote first.
options:
  state:
    description:
      - C(analyzed) reports the space (reads only).
      - C(cleaned) frees O(free_space).
      - C(unlocked) clears the lock of O(domain) whose holder is gone.
    type: str
    choices: [analyzed, cleaned, unlocked]
    default: analyzed
  domain:
    description:
      - The domain to look at. Required with O(state=unlocked).
      - With O(state=analyzed) or O(state=cleaned), without O(domain) or O(domains), every domain with a
        store in O(storage_dir).
    type: str
  domains:
    description: Several domains to look at or clean (instead of O(domain)).
    type: list
    elements: str
  free_space:
    description:
      - With O(state=cleaned), the free space wanted on the filesystem, such as V(10GB), V(512MiB) or a
        number of bytes. KB, MB, GB, TB are powers of 1000; K, M, G, T, KiB, MiB, GiB, TiB powers of 1024.
    type: str
  path:
    description:
      - With O(state=cleaned), a directory on the filesystem to free (a storage tier). Default is O(storage_dir).
      - Only the files on that filesystem count.
    type: path
  include_manual:
    description: With O(state=cleaned), also delete snapshots made by hand (not by a policy).
    type: bool
    default: false
  include_protected:
    description: With O(state=cleaned), also delete snapshots tagged C(protected).
    type: bool
    default: false
  max_chain_length:
    description: With O(state=analyzed), chains longer than this are recommended for consolidation.
    type: int
    default: 10
  job_timeout:
    description: Seconds a block job of a delete may take before it is aborted and the task fails.
    type: int
    default: 600
extends_documentation_fragment:
  - nova.snapshots.common
  - nova.snapshots.audit
  - nova.snapshots.common.store
  - nova.snapshots.block_jobs
attributes:
  check_mode:
    support: full
    description: O(state=cleaned) shows the snapshots it would delete and the space each frees; O(state=unlocked) what it would clear.
  diff_mode:
    support: full
    description: The free bytes before and after, and the snapshots to delete per domain.
  idempotent:
    support: full
    description: Once the free space is there, nothing more is deleted; a cleared lock is not cleared again.
notes:
  - The kernel releases a lock when its holder dies, so after a C(kill -9) the next task runs anyway;
    O(state=unlocked) then only clears the record naming the dead holder. A lock still held although
    its holder is gone (a process inherited it) is replaced by a new lock file.
author:
  - nova.snapshots developers (@nova-snapshots)
seealso:
  - module: nova.snapshots.nova_policy
  - module: nova.snapshots.nova_chain
  - module: nova.snapshots.nova_snapshot
'''

EXAMPLES = r'''
# nova snapshot analyze web-server --storage
- name: Where the space goes, and what would save some
  nova.snapshots.nova_storage:
    domain: web-server
    state: analyzed
  register: space

# nova storage cleanup --free-space 10GB
- name: Free 10 GB in the store by deleting old policy snapshots
  nova.snapshots.nova_storage:
    state: cleaned
    free_space: 10GB

- name: Free space on the archive tier, hand-made snapshots included
  nova.snapshots.nova_storage:
    state: cleaned
    free_space: 50GiB
    path: /srv/hdd/nova
    include_manual: true

# nova unlock web-server --force
- name: Clear the lock a killed run left
  nova.snapshots.nova_storage:
    domain: web-server
    state: unlocked
'''

RETURN = r'''
domains:
  description: With O(state=analyzed), per domain its store, snapshots, chains and recommendations.
  returned: when O(state=analyzed)
  type: list
  elements: dict
  contains:
    domain:
      description: The domain.
      type: str
    store:
      description: Its store directory.
      type: str
    store_bytes:
      description: Bytes the store directory and its tier directories take.
      type: int
    snapshots:
      description:
        - Per snapshot C(name), C(snapshot_type), C(created_at), C(bytes_on_disk), C(exclusive_bytes)
          (what deleting it frees), C(shared_bytes), C(memory_bytes), C(files), C(policy_made), C(protected),
          C(beyond_retention) and C(kept_because) (why part of it is not freed by a delete).
      type: list
      elements: dict
    chains:
      description: Per disk the chain C(length) and C(overhead_percent).
      type: dict
    recommendations:
      description: What would save space in this domain (as in the top-level RV(recommendations)).
      type: list
      elements: dict
recommendations:
  description:
    - With O(state=analyzed), each C(action) (C(consolidate), C(compress), C(move_to_archive),
      C(delete_old_policy_snapshots)) with its C(domain), C(reason), C(saves) (bytes) and the C(task) that does it.
  returned: when O(state=analyzed)
  type: list
  elements: dict
filesystem:
  description: With O(state=analyzed), the store's filesystem (C(path), C(free_bytes), C(size_bytes)).
  returned: when O(state=analyzed)
  type: dict
target_bytes:
  description: With O(state=cleaned), the free space asked for, in bytes.
  returned: when O(state=cleaned)
  type: int
free_before:
  description: With O(state=cleaned), free bytes before.
  returned: when O(state=cleaned)
  type: int
free_after:
  description: With O(state=cleaned), free bytes after (in check mode, as before).
  returned: when O(state=cleaned)
  type: int
target_met:
  description: With O(state=cleaned), whether the free space asked for is there.
  returned: when O(state=cleaned)
  type: bool
planned:
  description: With O(state=cleaned), the snapshots chosen (C(domain), C(name), C(freed_estimate), C(policy), C(beyond_retention)).
  returned: when O(state=cleaned)
  type: list
  elements: dict
deleted:
  description: With O(state=cleaned), the snapshots deleted (C(domain), C(name), C(freed) bytes measured).
  returned: when O(state=cleaned)
  type: list
  elements: dict
held:
  description:
    - With O(state=cleaned), what holds the rest of the space (C(domain), C(snapshot), C(bytes), C(reason)),
      such as protected and hand-made snapshots, snapshots whose delete frees nothing, the VMs' own images.
  returned: when O(state=cleaned)
  type: list
  elements: dict
actions:
  description: With O(state=cleaned), what was done (or would be, in check mode), in words.
  returned: when O(state=cleaned)
  type: list
  elements: str
lock:
  description:
    - With O(state=unlocked), the lock (C(path), C(state), C(holder), C(reason), C(still_open_by)).
    - C(state) is C(unlocked) (nothing to clear), C(stale) (the holder died, its record was cleared) or
      C(broken) (the holder is gone but the lock was still held; a new lock file replaced it).
  returned: when O(state=unlocked)
  type: dict
timings:
  description:
    - Seconds the task spent per phase, each second counted once (in the innermost phase), so a slow run
      can be explained from its result. C(plan) is the engine's planning, C(lock_wait) waiting for the
      domain's lock, C(libvirt) and C(qemu_img) the calls to them, C(store) crash-safe metadata writes,
      C(apply) the engine's own work while applying; C(total) is the whole task on the hypervisor.
  returned: always
  type: dict
  sample: {"plan": 0.012, "lock_wait": 0.0, "libvirt": 0.84, "qemu_img": 0.21, "store": 0.006, "apply": 0.01, "total": 1.12}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nova.snapshots.plugins.module_utils._common import argument_spec, run_module
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import QemuImg
from ansible_collections.nova.snapshots.plugins.module_utils.operations._storage import storage_task


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            store=True, audited=True,
            state=dict(type='str', default='analyzed', choices=['analyzed', 'cleaned', 'unlocked']),
            domain=dict(type='str'),
            domains=dict(type='list', elements='str'),
            free_space=dict(type='str'),
            path=dict(type='path'),
            include_manual=dict(type='bool', default=False),
            include_protected=dict(type='bool', default=False),
            max_chain_length=dict(type='int', default=10),
            job_timeout=dict(type='int', default=600),
            io_limit=dict(type='int'),
            parallel_disks=dict(type='bool', default=False),
        ),
        mutually_exclusive=[('domain', 'domains')],
        required_if=[('state', 'unlocked', ('domain',)), ('state', 'cleaned', ('free_space',))],
        supports_check_mode=True,
    )
    run_module(module, lambda hypervisor: storage_task(
        module.params, hypervisor, QemuImg(module.run_command), module.check_mode))


if __name__ == '__main__':
    main()
