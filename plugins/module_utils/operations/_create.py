# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Taking a snapshot: planned (validated, space checked) first, then made by libvirt atomically.

External, memory and disk-only snapshots put a new overlay on every selected disk (kept in the
store); internal ones live inside the qcow2 files. The record goes to the store after libvirt
made the snapshot, so a crash in between leaves a snapshot the next run adopts.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters import _scratch
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import MEMORY_MARGIN, OVERLAY_RESERVE, copy_file, require_free
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._snapshot_xml import SnapshotXML
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Conflict, Refused
from ansible_collections.nova.snapshots.plugins.module_utils.model._plan import Plan
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import OVERLAY_TYPES, SnapshotDisk, VmSnapshot, new_id, validate_name
from ansible_collections.nova.snapshots.plugins.module_utils.operations import _encryption


def plan_create(m, tree, name, snapshot_type, description=None, tags=None, category=None,
                disks=None, quiesce=False, key_file=None, encrypt=False, memory_compression='none', luks_iter_time=None):
    validate_name(name)
    _encryption.check_iter_time(luks_iter_time)
    existing = tree.by_name(name)
    state = m.domain.state
    dom = m.domain_xml()
    writable = [d for d in dom.disks if d.writable]
    targets = m.snapshot_disks(dom, disks)
    if existing is not None:
        return same_settings(m, tree, existing, snapshot_type, description, tags, category, disks)
    snapshot_type = snapshot_type or 'external'
    tags = list(tags or [])
    crypt = _encryption.crypt_for(m, dict(key_file=key_file, luks_iter_time=luks_iter_time), None,
                                  'a new snapshot on them', dom=dom)
    # once a disk is encrypted, every later overlay on it is too
    encrypt = bool(encrypt or _encryption.encrypted_parts(m, None, dom))
    if encrypt and snapshot_type == 'internal':
        raise Refused('encrypt works with external, memory and disk_only snapshots: an internal snapshot lives '
                      'inside the (unencrypted) qcow2 files the domain already uses; nothing was changed')
    if encrypt and crypt is None:
        raise Refused('encrypt: true needs key_file (a file holding the passphrase, readable by root only)')
    if luks_iter_time is not None and not encrypt:
        raise Refused('luks_iter_time sets the cost of LUKS overlays: it needs encrypt: true (or a domain whose '
                      'disks are already encrypted); nothing was changed')
    _encryption.check_compression(memory_compression)

    if snapshot_type == 'memory' and state not in ('running', 'paused'):
        raise Refused("a memory snapshot needs a running or paused VM; domain '%s' is %s"
                      % (m.domain.name, state))
    if quiesce:
        if snapshot_type == 'internal':
            raise Refused('quiesce works with external, memory and disk_only snapshots; '
                          'libvirt cannot quiesce an internal snapshot')
        if state != 'running':
            raise Refused("quiesce needs a running guest; domain '%s' is %s" % (m.domain.name, state))
        why = m.domain.agent_ping()
        if why:
            raise Refused("quiesce needs the guest agent, but the agent of domain '%s' does not answer: %s"
                          % (m.domain.name, why))
    kinds = set(s.snapshot_type == 'internal' for s in tree.snapshots.values())
    if kinds and (snapshot_type == 'internal') not in kinds:
        have = 'internal' if True in kinds else 'external'
        raise Refused("domain '%s' already has %s snapshots; this collection does not mix internal and "
                      "external snapshots in one history (an internal snapshot inside an image that "
                      "other snapshots freeze could not be reverted safely)" % (m.domain.name, have))
    if snapshot_type == 'internal' and dom.pflash:
        raise Refused("domain '%s' boots UEFI firmware from pflash, and libvirt cannot take internal snapshots of "
                      "such a domain; take an external, memory or disk_only snapshot (they keep its NVRAM too)"
                      % m.domain.name)
    if snapshot_type == 'internal':
        raw = [d.target for d in writable if d.target in targets and d.driver_type != 'qcow2']
        if raw:
            raise Refused('internal snapshots need qcow2 disks; %s %s not qcow2'
                          % (', '.join(raw), 'is' if len(raw) == 1 else 'are'))

    with_memory = state in ('running', 'paused') and snapshot_type != 'disk_only'
    check_space(m, dom, snapshot_type, with_memory, targets)
    snap_id = new_id()
    after = dict(name=name, snapshot_type=snapshot_type, disks=sorted(targets), memory=with_memory,
                 description=description, tags=tags, category=category, encrypted=encrypt,
                 memory_compression=memory_compression if with_memory and snapshot_type != 'internal' else None)
    actions = ['take %s snapshot %s of %s (disks %s%s)' % (snapshot_type, name, m.domain.name,
                                                           ', '.join(sorted(targets)), ', with RAM' if with_memory else '')]
    if encrypt:
        actions.append('encrypt its overlays (LUKS) and memory file (AES-256-GCM)')

    def apply():
        return create(m, tree, snap_id, name, snapshot_type, dom, targets, with_memory, description,
                      tags, category, quiesce, crypt if encrypt else None, after['memory_compression'] or 'none')
    return Plan(True, actions, before=None, after=after, apply=apply)


def same_settings(m, tree, existing, snapshot_type, description, tags, category, disks):
    """An existing snapshot is fine when every setting the task gives matches (unset ones are not compared)."""
    asked = dict(snapshot_type=snapshot_type, description=description, category=category,
                 tags=sorted(tags) if tags is not None else None, disks=sorted(disks) if disks else None)
    have = dict(snapshot_type=existing.snapshot_type, description=existing.description,
                tags=sorted(existing.tags), category=existing.category,
                disks=sorted(d.device for d in existing.disk_files))
    diff = ['%s is %r (asked %r)' % (k, have[k], asked[k]) for k in sorted(asked)
            if asked[k] is not None and asked[k] != have[k]]
    if existing.origin == 'adopted' and diff == ['snapshot_type is %r (asked %r)' % (have['snapshot_type'], snapshot_type)] \
            and snapshot_type in OVERLAY_TYPES and have['snapshot_type'] in OVERLAY_TYPES:
        diff = []   # libvirt cannot tell external from memory; trust the user for adopted ones
    if diff:
        raise Conflict("snapshot '%s' of domain '%s' already exists with different settings: %s"
                       % (existing.name, m.domain.name, '; '.join(diff)), snapshot=existing.name)
    return Plan(False, snapshot=m.describe(tree, existing))


def check_space(m, dom, snapshot_type, with_memory, targets):
    need_store = 0
    if snapshot_type in OVERLAY_TYPES:
        need_store += OVERLAY_RESERVE * len(targets)
        if with_memory:
            need_store += int(dom.memory_bytes * MEMORY_MARGIN)
    elif with_memory:
        # internal: the RAM state is written into the first disk's qcow2 file
        first = [d for d in dom.disks if d.target in targets][0].source_file
        require_free(os.path.dirname(first), dom.memory_bytes * MEMORY_MARGIN, 'the RAM state inside %s' % first)
    if need_store:
        require_free(m.store.root, need_store, 'the new overlays%s' % (' and the RAM state' if with_memory else ''))


def create(m, tree, snap_id, name, snapshot_type, dom, targets, with_memory, description, tags,
           category, quiesce, crypt=None, compression='none'):
    store = m.store
    store.make_dir(store.snapshot_dir(snap_id))
    sx = SnapshotXML()
    sx.name = name
    sx.description = description
    overlay = snapshot_type in OVERLAY_TYPES
    encode = overlay and with_memory and (crypt is not None or compression != 'none')
    scratch, remove_scratch = None, False
    if crypt is not None:
        crypt.activate()
    if overlay:
        sx.memory_mode = 'external' if with_memory else 'no'
        if encode:
            # libvirt writes the clear save image where it may (tmpfs when encrypting); sealed below
            scratch, remove_scratch = _encryption.memory_scratch(m, store.snapshot_dir(snap_id), dom.memory_bytes,
                                                                 crypt is not None)
            sx.memory_file = os.path.join(scratch, 'memory.raw')
        elif with_memory:
            sx.memory_file = store.memory_path(snap_id)
    else:
        sx.memory_mode = 'internal' if with_memory else 'no'
    frozen = []
    for disk in dom.disks:
        if disk.device not in (None, 'disk'):
            continue
        if disk.target not in targets:
            sx.add_disk(disk.target, 'no')
            continue
        if overlay:
            entry = sx.add_disk(disk.target, 'external', source_file=store.overlay_path(snap_id, disk.target), driver_type='qcow2')
            if crypt is not None:
                crypt.encrypt_source(entry.root.find('source'))
        else:
            sx.add_disk(disk.target, 'internal')
        backing = disk.backing_file      # from libvirt's live XML: no qemu-img call on the hot path
        frozen.append(SnapshotDisk(disk.target, disk.source_file, disk.driver_type or 'raw',
                                   (backing or None) if backing is not None else m.backing(disk.source_file)))
    live = overlay and with_memory and m.domain.state == 'running'
    made_here = []
    try:
        if crypt is not None:
            for disk in dom.disks:
                if disk.target in targets and disk.device in (None, 'disk'):
                    made_here.append(store.overlay_path(snap_id, disk.target))
                    crypt.create_overlay(made_here[-1], disk.source_file, disk.driver_type or 'raw')
        made = SnapshotXML(m.domain.create_snapshot(sx.to_string(), disk_only=not with_memory and overlay,
                                                    quiesce=quiesce, live=live, reuse_external=bool(made_here)))
        made_here = []
        if encode:
            _encryption.seal_memory(sx.memory_file, store.memory_path(snap_id), crypt.key if crypt else None, compression)
            made.memory_file = store.memory_path(snap_id)
            m.domain.redefine_snapshot(made.to_string(), current=True)
    finally:
        if remove_scratch:
            _scratch.remove(scratch)
        for path in made_here:      # libvirt did not take them
            if os.path.exists(path):
                os.unlink(path)
    if with_memory and overlay:
        os.chmod(store.memory_path(snap_id), 0o600)
    nvram = None
    if dom.nvram and os.path.exists(dom.nvram):
        nvram = store.nvram_path(snap_id)
        copy_file(dom.nvram, nvram)
    parent = tree.by_name(made.parent) if made.parent else None
    snap = VmSnapshot(snap_id, m.domain.name, name, snapshot_type, made.creation_time, made.state, frozen,
                      description=description, parent_snapshot=parent.id if parent else None,
                      memory_file=made.memory_file if overlay and with_memory else None,
                      tags=tags, category=category, quiesced=bool(quiesce), nvram_file=nvram,
                      encrypted=crypt is not None, memory_compression=compression if encode and compression != 'none' else None)
    store.save_snapshot_xml(snap_id, made.to_string())
    tree.add(snap)
    if tree.active_branch in tree.branches:
        tree.branches[tree.active_branch].head = snap.id
    store.save(tree)
    return m.describe(tree, snap)
