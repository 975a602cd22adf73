# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Branch switches and merges on encrypted chains: what of them needs the domain's key, and the keyed
pieces they use (the sealed RAM of a branch left running, a keyed qemu-img for the merge).

The rules are those of the rest of the collection (docs/encryption.md): an overlay on an encrypted
chain is LUKS, the RAM of a VM on encrypted disks is only ever on disk sealed, and a merge never
writes encrypted data into a clear image. A task that would touch any of that needs key_file; the
key is checked against the domain's verifier while planning, so a missing or wrong key is refused
before anything changes.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil

from ansible_collections.nova.snapshots.plugins.module_utils.adapters import _luks, _memory_codec
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused
from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import (
    TMPFS,
    Crypt,
    OpenMemory,
    save_scratch,
    saved_ram,
    seal_memory,
)
from ansible_collections.nova.snapshots.plugins.module_utils.model._crash import SWITCH_RAM_SAVED, crash_point


def chain_encrypted(m, path):
    """True when any layer of the chain of image `path` is LUKS-encrypted (headers only, no key)."""
    return any(_luks.image_encrypted(m.view.info(p)) for p in m.view.chain(path))


def layer_encrypted(m, path):
    """True when the image `path` itself is LUKS-encrypted."""
    return _luks.image_encrypted(m.view.info(path))


def memory_encrypted(path):
    """True when `path` is a memory file sealed with a key (a compressed-only one needs none)."""
    return bool(path) and os.path.exists(path) and _memory_codec.describe(path)[0]


def needs_key(what, reasons):
    """The sentence of a refusal for a task without key_file (reasons: why it needs the key)."""
    return '%s needs key_file (%s); nothing was changed' % (what, '; '.join(reasons))


class BranchKeys(object):
    """The task's key for one domain's branches: `crypt` is the Crypt of key_file (checked against
    the domain's key here, so a wrong one is refused while planning) or None."""

    def __init__(self, m, key_file):
        self.m = m
        self.crypt = Crypt(m, key_file) if key_file else None

    def require(self, what, reasons):
        """Refuse `what` when it has reasons to need the key and the task gave none."""
        if reasons and self.crypt is None:
            raise Refused("domain '%s': %s" % (self.m.domain.name, needs_key(what, reasons)))
        if reasons:
            return self.crypt
        return None

    # -- switch -------------------------------------------------------------------------------
    def switch_reasons(self, tree, leaving_running, target, tip):
        """Why a switch from the active branch (running or not) to branch `target` (tip snapshot
        `tip`) needs the key: [sentence]."""
        reasons = []
        if leaving_running and self.active_encrypted():
            reasons.append('the RAM of the branch left behind runs on encrypted disks and is saved sealed')
        if target is not None and target.disks:
            if any(chain_encrypted(self.m, p) for p in target.disks.values() if os.path.exists(p)):
                reasons.append("branch '%s' is on encrypted disks" % target.name)
            if memory_encrypted(target.memory_file):
                reasons.append("branch '%s''s saved RAM is encrypted" % target.name)
        elif tip is not None:
            if self.snapshot_encrypted(tip):
                reasons.append("snapshot '%s' is encrypted (the new overlays on it are LUKS)" % tip.name)
            if tip.memory_file and memory_encrypted(tip.memory_file):
                reasons.append("the memory file of snapshot '%s' is encrypted" % tip.name)
        return reasons

    def active_encrypted(self):
        """Whether the VM's disks (its live definition) are LUKS."""
        return any(d.writable and _luks.disk_encrypted(d) for d in self.m.domain_xml().disks)

    def snapshot_encrypted(self, snap):
        """Whether overlays on `snap`'s frozen images must be LUKS: it is encrypted, or a layer below is."""
        return bool(snap.encrypted) or any(chain_encrypted(self.m, d.file_path) for d in snap.disk_files
                                           if os.path.exists(d.file_path))

    def open_memory(self, path, encrypted):
        """OpenMemory of a memory file to restore (decoded into a private directory when it is sealed
        or compressed); close() it once QEMU has read it."""
        return OpenMemory(self.m, path, self.crypt, encrypted)

    def save_ram(self, dest, seal):
        """Stop the VM with its RAM in `dest`: saved by libvirt there, or (`seal`: its disks are
        encrypted) into a private tmpfs directory and sealed from there, so it never reaches a disk
        in clear."""
        if seal and self.crypt is None:       # planning refuses this first
            raise Refused('the RAM of a VM on encrypted disks is saved sealed: give key_file; nothing was changed')
        if not seal:
            self.m.domain.save(dest)
            os.chmod(dest, 0o600)
            return
        scratch = save_scratch(dest, self.m.domain_xml().memory_bytes)
        try:
            raw = os.path.join(scratch, 'memory.raw')
            self.m.domain.save(raw)
            crash_point(SWITCH_RAM_SAVED)
            seal_memory(raw, dest, self.crypt.key, 'none')
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        os.chmod(dest, 0o600)

    def recover_ram(self, dest):
        """A switch killed after libvirt saved the VM's RAM in clear into tmpfs (save_ram; the VM is
        stopped) and before it was sealed: seal it into `dest` now. False when nothing was left (a
        reboot empties tmpfs: the RAM is gone, the disks are as they were, as after a power cut)."""
        left = saved_ram(dest)
        if left is None:
            return False
        if self.crypt is None:        # planning refuses this first
            raise Refused('the RAM a killed switch left is sealed with the key: give key_file; nothing was changed')
        try:
            seal_memory(left[1], dest, self.crypt.key, 'none')
        finally:
            shutil.rmtree(left[0], ignore_errors=True)
        os.chmod(dest, 0o600)
        return True

    # -- merge --------------------------------------------------------------------------------
    def merge_images(self, encrypted):
        """(qemu-img to read and write the merge's layers with, the directory for clear scratch):
        keyed and tmpfs when anything the merge touches is encrypted."""
        if encrypted:
            return self.crypt.keyed(self.m.qemu_img, remember_maps=True), TMPFS
        return self.m.qemu_img, None


def carry_refusal(target, top, tip_name):
    """The refusal of a merge that would leave branch `target`'s clear overlay `top` (its writes since
    `tip_name`) on top of encrypted data."""
    return Refused("merging into branch '%s' would put its unencrypted overlay %s (its writes since snapshot '%s') "
                   "on encrypted images, and the guest's next writes would copy encrypted data into it in clear "
                   "(qcow2 copies whole clusters); take an encrypted snapshot of '%s' first (nova_snapshot with "
                   "encrypt: true and key_file), so its writes are in a LUKS overlay, then merge again; nothing "
                   "was changed" % (target, top, tip_name, target))
