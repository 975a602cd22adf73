# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Reverting to a snapshot.

Internal snapshots are reverted by libvirt. External, memory and disk-only ones by the collection
(libvirt 9.0 refuses to): new overlays on the snapshot's frozen images, the persistent definition
pointed at them, and RAM restored from the memory file with its saved XML edited to the new disks.
The overlay helpers here are also what a branch switch uses to bring a branch up.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import os
import time

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._snapshot_xml import SnapshotXML
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._save_image import read_xml, write_xml
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import OVERLAY_RESERVE, copy_file, require_free
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._luks import drop_encryption
from ansible_collections.nova.snapshots.plugins.module_utils.model._crash import VM_STOPPED, crash_point
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Failed, LibvirtFailed, NovaError, Refused, SnapshotNotFound
from ansible_collections.nova.snapshots.plugins.module_utils.model._plan import Plan
from ansible_collections.nova.snapshots.plugins.module_utils.operations import _encryption
from ansible_collections.nova.snapshots.plugins.module_utils.operations._gc import collect_garbage


RESTORE_RETRY_WAIT = 1.0


def plan_revert(m, tree, name, after='snapshot', force=False, key_file=None):
    snap = tree.by_name(name)
    if snap is None:
        raise SnapshotNotFound(m.domain.name, name)
    crypt = _encryption.Crypt(m, key_file) if key_file else None
    if snap.encrypted and crypt is None:
        raise Refused("snapshot '%s' of domain '%s' is encrypted: reverting to it needs key_file; nothing was changed"
                      % (name, m.domain.name))
    has_ram = snap.has_memory or (snap.snapshot_type == 'internal' and snap.vm_state in ('running', 'paused'))
    if after == 'snapshot':
        target = snap.vm_state if has_ram and snap.vm_state in ('running', 'paused') else 'shutoff'
    else:
        target = after
    if snap.snapshot_type != 'internal' or target == 'shutoff':
        require_persistent(m, 'a revert to %s' % name)
    state = m.domain.state
    before = dict(current=m.current_name(tree), state=state)
    result = dict(current=name, state=target)
    if (not force and tree.current == snap.id and tree.last_revert == dict(id=snap.id, state=target)
            and state == target):
        return Plan(False, before=before, after=before, snapshot=m.describe(tree, snap))
    how = 'restore RAM from %s' % snap.memory_file if (snap.memory_file and target != 'shutoff') else (
        'boot' if target != 'shutoff' and not has_ram else '')
    actions = ['revert %s to %s snapshot %s%s, leave it %s' % (m.domain.name, snap.snapshot_type, name,
                                                               ' (%s)' % how if how else '', target)]

    def apply():
        if snap.snapshot_type == 'internal':
            revert_internal(m, snap, target, has_ram)
        else:
            revert_overlays(m, tree, snap, target, crypt)
            mark_current_in_libvirt(m, tree, snap)
        tree.current = snap.id
        tree.last_revert = dict(id=snap.id, state=target)
        if tree.active_branch in tree.branches:
            tree.branches[tree.active_branch].head = snap.id     # like git reset --hard
        m.store.save(tree)
        collect_garbage(m, tree)
        return m.describe(tree, snap)
    return Plan(True, actions, before=before, after=result, apply=apply)


def revert_internal(m, snap, target, has_ram):
    if target == 'shutoff':
        m.domain.revert_internal(snap.name)
        m.domain.destroy()
    elif has_ram or target == 'running':
        m.domain.revert_internal(snap.name, after=target)
    else:
        m.domain.revert_internal(snap.name, after='paused')


def revert_overlays(m, tree, snap, target, crypt=None):
    """New overlays on the snapshot's frozen images, the VM moved onto them, RAM restored.

    Everything that can be checked or prepared is, before the VM is touched: the images, the space,
    the overlays themselves, and the memory file's saved XML (edited to this domain's name, UUID and
    new disks). What fails after that is rolled back by replace_vm."""
    check_intact(m, snap, with_ram=target != 'shutoff')
    persistent = m.domain_xml(inactive=True)
    paths = overlay_paths(m, snap)
    require_free(m.store.root, OVERLAY_RESERVE * len(paths), 'the overlays of the revert')
    luks = crypt if snap.encrypted else None
    # a compressed or encrypted memory file is decoded first (a wrong key stops here, nothing touched)
    memory = _encryption.OpenMemory(m, snap.memory_file if target != 'shutoff' else None, crypt, snap.encrypted)
    try:
        if luks is not None:
            luks.activate()
        new_overlays(m, snap, persistent, paths, luks=luks)
        start = prepare_start(m, paths, memory.path, target, luks=luks)
        files = {persistent.nvram: snap.nvram_file} if snap.nvram_file and persistent.nvram else {}
        replace_vm(m, persistent, start, "reverting to snapshot '%s'" % snap.name, files)
    finally:
        memory.close()      # the clear RAM state goes as soon as QEMU has read it


def require_persistent(m, what):
    """A transient domain (never defined) vanishes when it stops: refuse before touching it."""
    if not m.domain.is_persistent:
        raise Refused("domain '%s' is transient (started without being defined), and %s must stop it, after which "
                      "it would be gone; define it first (virsh dumpxml %s > vm.xml; virsh define vm.xml); "
                      "nothing was changed" % (m.domain.name, what, m.domain.name))


def prepare_start(m, disks, memory_file, target, luks=None):
    """How to start the (then defined, stopped) VM in state `target`, worked out now: from
    `memory_file` with its saved XML edited to this domain's name, UUID and `disks`, or by booting;
    None leaves it off. Returns a callable (or None)."""
    if target == 'shutoff':
        return None
    paused = target == 'paused'
    if not memory_file:
        return lambda: m.domain.start(paused=paused)
    saved = m.parse_domain(m.hypervisor.save_image_xml(memory_file))
    if saved.name != m.domain.name:
        # Renamed since the snapshot (virsh domrename). libvirt refuses to restore RAM saved under
        # another name, whatever XML it is given, so the name in the file itself follows the domain.
        inside = m.parse_domain(read_xml(memory_file))
        inside.rename(m.domain.name, m.domain.uuid)
        write_xml(memory_file, inside.to_string())
        saved.rename(m.domain.name, m.domain.uuid)
    targets = set(d.target for d in saved.disks)
    lost = sorted(set(disks) - targets)
    if lost:
        raise Refused("the memory file %s holds no disk %s (its devices: %s); nothing was changed"
                      % (memory_file, ', '.join(lost), ', '.join(sorted(targets))))
    for disk in saved.disks:
        if disk.target in disks:
            disk.point_at(disks[disk.target])
            if luks is not None:
                luks.describe_disk(disk)
            else:
                drop_encryption(disk)
    xml = saved.to_string()

    def restore():
        try:
            m.hypervisor.restore(memory_file, xml, paused=paused)
        except LibvirtFailed:
            # a QEMU that was just destroyed can still hold what the new one needs; once more
            time.sleep(RESTORE_RETRY_WAIT)
            m.hypervisor.restore(memory_file, xml, paused=paused)
    return restore


def replace_vm(m, persistent, start, what, files=None):
    """Stop the VM, define it as `persistent`, put `files` ({domain's file: snapshot's copy}, such as
    the NVRAM) in place and start() it; all or nothing.

    If any of that fails, the VM's previous definition (its previous overlays, untouched) and files
    are put back and the VM started again if it ran, and the error says so."""
    require_persistent(m, what)
    old_xml = m.domain.xml(inactive=True)
    was = m.domain.state
    m.domain.destroy()
    crash_point(VM_STOPPED)
    kept = {}
    try:
        for dest, source in (files or {}).items():
            kept[dest] = dest + '.nova-before' if os.path.exists(dest) else None
            if kept[dest]:
                os.rename(dest, kept[dest])
            copy_file(source, dest)
        m.hypervisor.define(persistent.to_string())
        if start is not None:
            start()
    except (NovaError, OSError) as e:
        raise Failed('%s failed: %s. %s' % (what, getattr(e, 'msg', None) or str(e), put_back(m, old_xml, was, kept)))
    for before in kept.values():
        if before:
            os.unlink(before)


def put_back(m, old_xml, was, kept=None):
    """Put the VM back on the definition and files it had; the sentence that says what was done."""
    try:
        m.domain.destroy()
        for dest, before in (kept or {}).items():
            if before and os.path.exists(before):
                os.rename(before, dest)
            elif before is None and os.path.exists(dest):
                os.unlink(dest)
        m.hypervisor.define(old_xml)
        if was in ('running', 'paused'):
            m.domain.start(paused=was == 'paused')
    except (NovaError, OSError) as e:
        return ('Putting the VM back on its previous disks failed too (%s); its previous definition is: %s'
                % (getattr(e, 'msg', None) or str(e), old_xml))
    if was in ('running', 'paused'):
        return ('The VM was put back on the disks it ran on (nothing on them was lost) and started again; '
                'its RAM from before the revert could not be kept.')
    return 'The VM was put back on the disks it had; nothing was lost.'


def check_intact(m, snap, with_ram):
    for d in snap.disk_files:
        if not os.path.exists(d.file_path):
            raise Refused("snapshot '%s' is damaged: its image %s for %s is missing" % (snap.name, d.file_path, d.device))
    if snap.memory_file and with_ram and not os.path.exists(snap.memory_file):
        raise Refused("snapshot '%s' is damaged: its memory file %s is missing" % (snap.name, snap.memory_file))


def overlay_paths(m, snap):
    """Fresh paths for new overlays on `snap`'s frozen images (one per disk it covers)."""
    return dict((d.device, os.path.join(m.store.active_dir, 'disk_%s-%s.qcow2'
                                        % (d.device, binascii.hexlify(os.urandom(4)).decode())))
                for d in snap.disk_files)


def new_overlays(m, snap, persistent, paths, luks=None):
    """Create overlays at `paths` on `snap`'s frozen images and point the definition at them
    (LUKS-encrypted ones with `luks`, the Crypt of an encrypted snapshot)."""
    m.store.make_dir(m.store.active_dir)
    for d in snap.disk_files:
        disk = persistent.disk(d.device)
        if disk is None:
            raise Refused("domain '%s' no longer has disk %s that snapshot '%s' covers"
                          % (m.domain.name, d.device, snap.name))
        if not os.path.exists(paths[d.device]):
            if luks is not None:
                luks.create_overlay(paths[d.device], d.file_path, d.format)
            else:
                m.qemu_img.create_overlay(paths[d.device], d.file_path, d.format)
            os.chmod(paths[d.device], 0o600)
        disk.point_at(paths[d.device])
        if luks is not None:
            luks.describe_disk(disk)
        else:
            drop_encryption(disk)
    return paths


def mark_current_in_libvirt(m, tree, snap):
    """Make `snap` libvirt's current snapshot too, with the parent our tree has."""
    try:
        sx = SnapshotXML(m.domain.snapshot_xml(snap.name))
    except SnapshotNotFound:
        saved = m.store.snapshot_xml(snap.id)
        if saved is None:
            return
        sx = SnapshotXML(saved)
    sx.parent = m.name_of(tree, snap.parent_snapshot)
    m.domain.redefine_snapshot(sx.to_string(), current=True)
