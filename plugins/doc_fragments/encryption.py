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
  luks_iter_time:
    description:
      - With O(state=present) and an encrypted snapshot, the milliseconds of PBKDF2 work each LUKS key
        slot of the new overlays costs to open (QEMU's C(encrypt.iter-time)). QEMU pays it again for
        every layer of a chain at every start, restore and block job, and qemu-img for every call that
        reads the chain.
      - The value is kept for the domain, so every later overlay on its disks (branch switches,
        consolidation, repairs, later snapshots) costs the same; a later task that gives another value
        changes it for the layers made from then on. When never given, C(1000).
      - Key stretching guards a guessable passphrase; a O(key_file) holding a long random key (as
        C(docs/encryption.md) recommends) gains nothing from it, and a lower value makes every open
        cheaper. Between C(10) and C(60000).
    type: int
requirements:
  - zstandard (on the managed node, for O(memory_compression=zstd))
'''

    # nova_snapshot_export: bundles of encrypted snapshots.
    EXPORT = r'''
options:
  encrypt:
    description:
      - Write the bundle's disks as LUKS-encrypted qcow2 images, with the key in O(key_file), also for a
        snapshot that is not encrypted. A snapshot whose disks are encrypted is always exported
        encrypted (with its own key) unless O(decrypt) is set, so data written encrypted is not written
        in clear again by an export.
      - Encrypted exports are full bundles (O(format=bundle), no O(incremental_from), no O(compress));
        the domain definition, the record and the manifest in the bundle are not encrypted (they hold
        no guest data).
    type: bool
    default: false
  decrypt:
    description:
      - Export an encrypted snapshot in clear (the disks as plain qcow2), which is refused otherwise.
        Needs O(key_file). Say it only where the bundle is protected some other way.
    type: bool
    default: false
'''

    # nova_policy: the snapshots an enforce run takes.
    POLICY = r'''
options:
  encrypt:
    description:
      - With O(state=enforced), encrypt the snapshots the run takes, as
        O(nova.snapshots.nova_snapshot#module:encrypt) does (needs O(key_file)). A domain whose disks
        are already encrypted gets encrypted snapshots whatever O(encrypt) says, and needs O(key_file).
      - Prunes (deletes) of encrypted snapshots need O(key_file) too, and so does O(auto_consolidate) on
        an encrypted domain.
    type: bool
    default: false
  memory_compression:
    description:
      - With O(state=enforced), how the memory file of each memory snapshot taken is compressed, as
        O(nova.snapshots.nova_snapshot#module:memory_compression).
    type: str
    choices: [none, zstd]
    default: none
'''
