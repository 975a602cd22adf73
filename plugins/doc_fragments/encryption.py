# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # Keep in step with KEY_SPEC / ENCRYPTION_SPEC in plugins/module_utils/operations/_encryption.py.

    # Tasks that work on a domain whose snapshots may be encrypted.
    DOCUMENTATION = r'''
options:
  key_file:
    description:
      - File holding the passphrase (or key) of the domain's encrypted snapshots. Its bytes, exactly
        as they are, are the passphrase of the LUKS overlays and the key of the memory files.
      - It must be a regular file owned by the user running the task and not readable or writable by
        group or others (for example mode C(0400)); otherwise the task is refused, naming the file and its mode.
      - Needed by every task that reads or writes an encrypted chain; without it such a task fails
        with a message saying so, and nothing is changed. A key other than the one the domain's snapshots
        were made with is refused the same way.
      - The key itself never appears in a result, a log, the store or libvirt's XML (libvirt gets it
        as a private, ephemeral secret).
    type: path
requirements:
  - cryptography >= 3.4 (on the managed node, for encrypted memory files)
'''

    # nova_snapshot: creating encrypted or compressed snapshots.
    CREATE = r'''
options:
  encrypt:
    description:
      - With O(state=present), encrypt the new snapshot. Every new overlay is a LUKS-encrypted qcow2
        (and so is every later overlay on those disks, whatever O(encrypt) says), opened by QEMU through
        a libvirt secret defined from O(key_file). The memory file is encrypted with AES-256-GCM in
        authenticated chunks; libvirt writes the RAM into a private tmpfs directory (C(/dev/shm)),
        from where it is encrypted into the store, so it never reaches a disk in clear.
      - Needs O(key_file). Not possible for O(snapshot_type=internal), which lives inside the domain's
        existing (clear) qcow2 files.
    type: bool
    default: false
  memory_compression:
    description:
      - With O(state=present), how the memory file of a snapshot with RAM is compressed. C(zstd)
        compresses it (before encryption, when O(encrypt) is set) with the zstandard library;
        a revert decompresses it first.
      - The default C(none) keeps the file a plain libvirt save image (unless encrypted), which
        is also the fastest to take and revert; see C(docs/encryption.md) for measured sizes and times.
    type: str
    choices: [none, zstd]
    default: none
requirements:
  - zstandard (on the managed node, for O(memory_compression=zstd))
'''
