# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""The records the collection keeps and returns: the VmSnapshot and SnapshotDisk of the nova design.

Pure Python, no I/O. Derived facts (children, is_current, sizes on disk) are not stored: they
are computed when a record is shown, so they can never disagree with the tree.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import hashlib
import os
import re
import time

from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused

SNAPSHOT_TYPES = ('internal', 'external', 'memory', 'disk_only')
# Types whose disks are new overlays on frozen images (everything but internal).
OVERLAY_TYPES = ('external', 'memory', 'disk_only')
MAX_NAME_BYTES = 255


class InvalidName(Refused):
    pass


def validate_name(name, what='snapshot'):
    """Names become libvirt names and directory names: refuse what could escape or confuse either."""
    if not isinstance(name, str) or name == '':
        raise InvalidName('%s name must be a non-empty string' % what)
    problems = []
    if '/' in name:
        problems.append("contains '/'")
    if name.startswith('.'):
        problems.append("starts with '.'")
    if '\0' in name:
        problems.append('contains a NUL byte')
    if re.search(r'[<>&"\']', name):
        problems.append('contains an XML metacharacter (< > & " \')')
    if re.search(r'[\x00-\x1f\x7f]', name.replace('\0', '')):
        problems.append('contains a control character')
    if len(name.encode('utf-8')) > MAX_NAME_BYTES:
        problems.append('is longer than %d bytes' % MAX_NAME_BYTES)
    if problems:
        raise InvalidName('invalid %s name %r: it %s' % (what, name, ' and '.join(problems)), name=name)
    return name


def new_id(now=None):
    """Sortable, unique snapshot ids: creation time plus randomness."""
    stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime(now if now is not None else time.time()))
    return '%s-%s' % (stamp, binascii.hexlify(os.urandom(3)).decode())


def adopted_id(creation_time, name):
    """The id a snapshot made outside the collection gets: the same every time it is looked at
    (so a report before adoption and the store after it agree), unique per name."""
    stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime(creation_time or 0))
    return '%s-%s' % (stamp, hashlib.sha256(name.encode('utf-8')).hexdigest()[:6])


def iso_time(epoch):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(epoch)) if epoch is not None else None


class SnapshotDisk(object):
    """One disk of a snapshot: `file_path` is the image that holds the disk's state at the snapshot.

    For internal snapshots that is the qcow2 file containing the snapshot; for the other types it is
    the image that was frozen when the snapshot was taken (the new overlay went on top of it).
    """

    FIELDS = ('device', 'file_path', 'format', 'backing_file')

    def __init__(self, device, file_path, format='qcow2', backing_file=None):
        self.device = device
        self.file_path = file_path
        self.format = format
        self.backing_file = backing_file

    def to_dict(self):
        return dict((f, getattr(self, f)) for f in self.FIELDS)

    @classmethod
    def from_dict(cls, data):
        return cls(**dict((f, data.get(f)) for f in cls.FIELDS))


class VmSnapshot(object):
    """A snapshot as the store keeps it."""

    FIELDS = ('id', 'vm_name', 'name', 'description', 'snapshot_type', 'created_at', 'creation_time',
              'vm_state', 'parent_snapshot', 'merge_parents', 'memory_file', 'config_snapshot', 'tags',
              'category', 'origin', 'quiesced', 'nvram_file', 'encrypted', 'memory_compression')

    def __init__(self, id, vm_name, name, snapshot_type, creation_time, vm_state, disk_files,
                 description=None, parent_snapshot=None, memory_file=None, config_snapshot=None,
                 tags=None, category=None, origin='nova', quiesced=False, created_at=None, merge_parents=None,
                 nvram_file=None, encrypted=False, memory_compression=None):
        self.id = id
        self.encrypted = bool(encrypted)    # LUKS overlays and an encrypted memory file (operations/_encryption.py)
        self.memory_compression = memory_compression    # 'zstd' when the memory file is compressed
        self.nvram_file = nvram_file        # a UEFI domain's NVRAM as it was, copied into the snapshot
        self.vm_name = vm_name
        self.name = name
        self.description = description
        self.snapshot_type = snapshot_type
        self.creation_time = creation_time
        self.created_at = created_at or iso_time(creation_time)
        self.vm_state = vm_state
        self.parent_snapshot = parent_snapshot
        self.disk_files = list(disk_files)
        self.memory_file = memory_file
        self.config_snapshot = config_snapshot
        self.tags = list(tags or [])
        self.category = category
        self.origin = origin          # 'nova' (made by the collection) or 'adopted' (found in libvirt)
        self.quiesced = quiesced
        # A merge result records its other parents here (parent_snapshot is the target's line).
        self.merge_parents = list(merge_parents or [])

    @property
    def has_overlays(self):
        return self.snapshot_type in OVERLAY_TYPES

    @property
    def has_memory(self):
        return self.memory_file is not None

    def disk(self, device):
        for d in self.disk_files:
            if d.device == device:
                return d
        return None

    def to_dict(self):
        data = dict((f, getattr(self, f)) for f in self.FIELDS)
        data['disk_files'] = [d.to_dict() for d in self.disk_files]
        return data

    @classmethod
    def from_dict(cls, data):
        kwargs = dict((f, data.get(f)) for f in cls.FIELDS if f in data)
        kwargs['disk_files'] = [SnapshotDisk.from_dict(d) for d in data.get('disk_files', [])]
        return cls(**kwargs)


class Branch(object):
    """A named, writable line of work that starts at snapshot `base` (None: the VM's first line).

    `head` is the newest snapshot taken on the branch (None until one is). While the branch is not
    active, `disks` maps each disk to the overlay holding the branch's writes since its head, and
    `memory_file`/`vm_state` keep its RAM when the VM was running as it was left (like a managed
    save), so switching back resumes it exactly.
    """

    FIELDS = ('name', 'base', 'head', 'disks', 'memory_file', 'vm_state', 'created_at', 'activating')

    def __init__(self, name, base=None, head=None, disks=None, memory_file=None, vm_state=None, created_at=None,
                 activating=None):
        self.name = name
        self.base = base
        self.head = head
        self.disks = dict(disks or {})
        self.memory_file = memory_file
        self.vm_state = vm_state
        self.created_at = created_at
        # Overlays a switch to this branch is creating: written before they are, so a switch
        # killed part-way is recognised (the VM already on them) and finished by the next run.
        self.activating = dict(activating or {})

    @property
    def tip(self):
        """The snapshot the branch's state builds on: its head, or its base before any snapshot."""
        return self.head or self.base

    def to_dict(self):
        return dict((f, getattr(self, f)) for f in self.FIELDS)

    @classmethod
    def from_dict(cls, data):
        return cls(**dict((f, data.get(f)) for f in cls.FIELDS))
