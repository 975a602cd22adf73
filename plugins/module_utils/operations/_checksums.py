# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.
"""Recorded checksums follow the collection's own rewrites of frozen layers.

A frozen layer's bytes change only through the collection itself: a delete commits a layer into
it, consolidation merges into it, optimization recompresses it, a tier move copies it elsewhere,
a rebase rewrites its header. Each of those tells refresh_checksums, so a snapshot that recorded
checksums (nova_snapshot checksum=...) records the new file's, with the same algorithm, and
verification never reports the collection's own work as corruption. Snapshots without recorded
checksums cost nothing here.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._chains import real
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._checksum import ChecksumFile, file_digest, file_facts
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NovaError


def refresh_checksums(manager, tree, moves, why):
    """`moves` is {old path: new path} of layers the collection rewrote (the same path when rewritten
    in place). Returns how many recorded checksums were renewed."""
    wanted = dict((real(old), new) for old, new in moves.items() if new)
    renewed = 0
    for snap in tree.snapshots.values():
        record = ChecksumFile(manager.store.snapshot_dir(snap.id))
        if not wanted or not os.path.exists(record.path):
            continue
        data = record.load()
        changed = False
        for old in list(data['files']):
            new = wanted.get(real(old))
            if new is None or not os.path.exists(new):
                continue
            entry = data['files'].pop(old)
            digest, _read = file_digest(new, entry.get('algorithm') or 'sha256')
            facts = file_facts(new)
            entry.update(path=new, size=facts['size'], mtime=facts['mtime'], digest=digest,
                         recorded_at=int(time.time()), result='recorded again after %s' % why)
            if entry.get('backing') is not None:
                try:
                    entry['backing'] = manager.qemu_img.info(new).backing_file
                except NovaError:
                    pass    # verification names an unreadable image itself
            data['files'][new] = entry
            changed = True
            renewed += 1
        if changed:
            record.save(data)
    return renewed
