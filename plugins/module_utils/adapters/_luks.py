# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""LUKS-encrypted qcow2 overlays: made with qemu-img, and described to libvirt in disk XML.

The collection makes every encrypted overlay itself with qemu-img (a snapshot's with libvirt's
--reuse-external), so all of them have the same, bounded, key-slot cost (ITER_TIME_MS).

What libvirt 9.0 does (found on the real daemon, see docs/encryption.md): an external snapshot
whose <disk><source> holds <encryption format='luks' engine='qemu'><secret type='passphrase'
uuid=.../></encryption> makes the new overlay LUKS-encrypted itself (no --reuse-external needed),
and keeps the whole chain with each layer's <encryption> in the live and persistent definitions.
Without engine='qemu' the persistent definition it writes does not start again ("Unexpected enum
value 0 for virStorageEncryptionEngine"), so the engine is always given. An overlay the collection
makes (a revert) must be described with its full <backingStore> chain, since libvirt cannot know
the secret of an encrypted layer it only finds in an image header.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import QemuImgFailed
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._xml import sub_element


# Milliseconds of PBKDF2 work a LUKS key slot costs to open. QEMU's default (2000) is paid again by
# every layer of a chain at every start, restore and block job; half of it still stretches a
# passphrase, and a key file should hold a long random key anyway (docs/encryption.md).
ITER_TIME_MS = 1000
# What a task may ask for (luks_iter_time): below 10 ms QEMU's calibration rarely succeeds at all; a
# minute per open of each layer is already more than any start of a VM can bear.
MIN_ITER_TIME_MS, MAX_ITER_TIME_MS = 10, 60000

# QEMU 7.2 times its first PBKDF2 round (2^15 iterations, a few ms) by the thread's CPU time in whole
# milliseconds and gives up when that reads 0: about one new key slot in four on this machine, at any
# iter-time (measured: 10 of 40 `qemu-img create -o encrypt.format=luks`). The failure comes within
# ~10 ms and writes nothing usable, so trying again is cheap and 20 tries leave ~1e-12.
CALIBRATION_FAILED = 'Unable to get accurate CPU usage'
CALIBRATION_ATTEMPTS = 20


def luks_options(secret_id, iter_time=ITER_TIME_MS):
    """qemu-img's creation options for a LUKS-encrypted qcow2 whose passphrase is the secret object `secret_id`."""
    return ['encrypt.format=luks', 'encrypt.key-secret=%s' % secret_id, 'encrypt.iter-time=%d' % iter_time]


def write_key_slot(run, dest):
    """`run()`, a qemu-img command that writes a new LUKS image `dest`, tried again while QEMU's
    PBKDF2 calibration fails; any other failure, or the last one, is raised."""
    for attempt in range(1, CALIBRATION_ATTEMPTS + 1):
        try:
            return run()
        except QemuImgFailed as e:
            if CALIBRATION_FAILED not in e.msg or attempt == CALIBRATION_ATTEMPTS:
                raise
            if os.path.exists(dest):
                os.unlink(dest)
    return None


def encryption_element(source, secret_uuid):
    """Put <encryption format='luks' engine='qemu'><secret .../></encryption> into `source`."""
    for old in source.findall('encryption'):
        source.remove(old)
    enc = sub_element(source, 'encryption', format='luks', engine='qemu')
    sub_element(enc, 'secret', type='passphrase', uuid=secret_uuid)
    return enc


def drop_encryption(disk):
    """The DiskXML `disk`, pointed at a clear image (a revert to a snapshot from before encryption),
    loses the <encryption> its old image had: QEMU refuses a LUKS option on an image without LUKS."""
    source = disk.root.find('source')
    for old in (source.findall('encryption') if source is not None else []):
        source.remove(old)


def disk_encrypted(disk):
    """True when the DiskXML `disk` uses a LUKS-encrypted image."""
    return disk.root.find('source/encryption') is not None


def image_encrypted(info):
    """True when the qemu-img ImageInfo `info` is an encrypted image (readable without the key)."""
    return bool(info.raw.get('encrypted')) or 'encrypt' in ((info.raw.get('format-specific') or {}).get('data') or {})


def describe_chain(disk, chain, secret_uuid):
    """Make the DiskXML `disk` (already pointed at chain[0]) describe the chain [ImageInfo] fully:
    <encryption> on every encrypted layer, an explicit <backingStore> for every image below."""
    if image_encrypted(chain[0]):
        encryption_element(disk.root.find('source'), secret_uuid)
    for bs in disk.root.findall('backingStore'):
        disk.root.remove(bs)
    parent = disk.root
    for info in chain[1:]:
        node = sub_element(parent, 'backingStore', type='file')
        sub_element(node, 'format', type=info.format or 'raw')
        source = sub_element(node, 'source', file=info.filename)
        if image_encrypted(info):
            encryption_element(source, secret_uuid)
        parent = node
    sub_element(parent, 'backingStore')       # the end of the chain


def create_overlay(qemu_img, path, backing, backing_format, size, key_file, iter_time=ITER_TIME_MS):
    """A new LUKS-encrypted qcow2 `path` on `backing`, its passphrase read by qemu-img from `key_file`.

    `-u` with the size given: the backing image is not opened (it may itself be encrypted)."""
    if not os.path.isabs(backing):
        raise QemuImgFailed('refusing a relative backing path %r for %s' % (backing, path))
    args = ('create', '-q', '-u', '-f', 'qcow2', '--object', 'secret,id=nova-sec0,file=%s' % key_file,
            '-o', ','.join(luks_options('nova-sec0', iter_time)),
            '-F', backing_format, '-b', backing, path, str(size))
    write_key_slot(lambda: qemu_img.run(*args), path)
