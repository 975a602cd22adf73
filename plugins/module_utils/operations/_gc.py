# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Garbage: images and files of the store that nothing needs any more.

"Needed" is every image in the chain of something that writes or is restored: the VM's disks,
each inactive branch's, each snapshot's frozen images; and every snapshot's memory file.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._chains import needed_files, real


def collect_garbage(m, tree):
    """Delete images and files of the store that nothing needs any more."""
    m.view.invalidate()
    needed = needed_files(m.view, m.all_tops(tree))
    memory = set(real(s.memory_file) for s in tree.snapshots.values() if s.memory_file)
    roots = [os.path.join(m.store.root, 'snapshots'), m.store.active_dir] + m.store.tier_dirs()
    for root in roots:
        if not os.path.isdir(root):
            continue
        with os.scandir(root) as entries:
            entries = list(entries)
        for entry in entries:
            path = entry.path
            if entry.is_dir():
                snap_alive = entry.name in tree.snapshots
                kept = 0        # one listing per directory: a store of 500 snapshots is 500 of them a change
                for name in os.listdir(path):
                    f = os.path.join(path, name)
                    if name.endswith('.qcow2') and real(f) not in needed:
                        os.unlink(f)
                    elif not snap_alive and not name.endswith('.qcow2') and real(f) not in memory:
                        os.unlink(f)
                    else:
                        kept += 1
                if not kept:
                    os.rmdir(path)
            elif entry.name.endswith('.qcow2') and real(path) not in needed:
                os.unlink(path)
