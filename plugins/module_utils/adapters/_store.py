# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""The metadata store on disk (docs/architecture.md, storage layout):

    <storage_dir>/<vm>/metadata.json                      the tree: snapshots, current
    <storage_dir>/<vm>/snapshots/<id>/metadata.json       that snapshot's record
    <storage_dir>/<vm>/snapshots/<id>/snapshot.xml        libvirt's snapshot XML, to redefine it
    <storage_dir>/<vm>/snapshots/<id>/disk_<dev>.qcow2    overlays the snapshot created
    <storage_dir>/<vm>/snapshots/<id>/memory.save         RAM state (0600)
    <storage_dir>/<vm>/active/disk_<dev>-<hex>.qcow2      overlays a revert or a new branch started
    <storage_dir>/<vm>/branches/<name>/memory.save        RAM of a branch left while running (0600)

Writes are crash-safe (temp file, fsync, rename, fsync of the directory); every change holds the
domain's lock. Directories are 0700 and owned by the user QEMU runs as, which must reach the
overlays inside them.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import json
import os
import time
from contextlib import contextmanager

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import replace_file
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Conflict, Failed, NotFound
from ansible_collections.nova.snapshots.plugins.module_utils.model._tree import Tree


class LockTimeout(Conflict):
    pass


class StoreCorrupt(Failed):
    pass


class Store(object):
    """One domain's part of the store."""

    def __init__(self, storage_dir, vm_name, owner=None, lock_timeout=60):
        self.root = os.path.join(storage_dir, vm_name)
        self.vm_name = vm_name
        self.owner = owner          # (uid, gid) QEMU runs as, or None to keep root's
        self.lock_timeout = lock_timeout

    # -- paths --------------------------------------------------------------------------------
    @property
    def tree_path(self):
        return os.path.join(self.root, 'metadata.json')

    def snapshot_dir(self, snap_id):
        return os.path.join(self.root, 'snapshots', snap_id)

    def overlay_path(self, snap_id, device):
        return os.path.join(self.snapshot_dir(snap_id), 'disk_%s.qcow2' % device)

    def memory_path(self, snap_id):
        return os.path.join(self.snapshot_dir(snap_id), 'memory.save')

    def xml_path(self, snap_id):
        return os.path.join(self.snapshot_dir(snap_id), 'snapshot.xml')

    def branch_memory_path(self, branch):
        return os.path.join(self.root, 'branches', branch, 'memory.save')

    @property
    def active_dir(self):
        return os.path.join(self.root, 'active')

    def owns(self, path):
        """Whether `path` is a file this store created (and so may ever delete)."""
        real = os.path.realpath(path)
        return any(real.startswith(os.path.realpath(r) + os.sep) for r in [self.root] + self.tier_dirs())

    # -- storage tiers: the domain's directories on other storage (active/archive) -----------
    @property
    def tiers_path(self):
        return os.path.join(self.root, 'tiers.json')

    def tier_dirs(self):
        try:
            with open(self.tiers_path) as f:
                return json.load(f)
        except (IOError, OSError, ValueError):
            return []

    def tier_dir(self, tier_root):
        """This domain's private directory under the tier `tier_root` (recorded, so its files are ours)."""
        if not os.path.isdir(tier_root):
            raise NotFound('storage tier %s does not exist (create it, on the storage you want, first)' % tier_root)
        path = os.path.join(os.path.realpath(tier_root), self.vm_name)
        if not os.path.isdir(path):
            os.mkdir(path, 0o700)
        if self.owner:
            os.chown(path, self.owner[0], self.owner[1])
        dirs = self.tier_dirs()
        if path not in dirs:
            self.make_dir(self.root)
            self.replace(self.tiers_path, json.dumps(dirs + [path]))
        return path

    # -- files ------------------------------------------------------------------------------
    @staticmethod
    def replace(path, data, mode=0o600):
        """Replace a file of the store crash-safely (temp file, fsync, rename, fsync of the directory)."""
        replace_file(path, data, mode)

    # -- optimization record: which frozen layers were rewritten, with which settings -----------
    @property
    def optimized_path(self):
        return os.path.join(self.root, 'optimized.json')

    def optimized(self):
        """{real path: {stamp, settings}} of the layers `nova_chain state=optimized` rewrote."""
        try:
            with open(self.optimized_path) as f:
                return json.load(f)
        except (IOError, OSError, ValueError):
            return {}

    def save_optimized(self, record):
        self.make_dir(self.root)
        self.replace(self.optimized_path, json.dumps(record, indent=1, sort_keys=True))

    # -- directories --------------------------------------------------------------------------
    def make_dir(self, path):
        """Create a private directory (and its private parents inside the store)."""
        parent = os.path.dirname(path)
        if path != self.root and not os.path.isdir(parent):
            self.make_dir(parent)
        if not os.path.isdir(path):
            if path == self.root and not os.path.isdir(parent):
                os.makedirs(parent, 0o755)
            os.mkdir(path, 0o700)
        os.chmod(path, 0o700)
        if self.owner:
            os.chown(path, self.owner[0], self.owner[1])
        return path

    # -- lock ---------------------------------------------------------------------------------
    @contextmanager
    def lock(self):
        """Hold the domain's lock; a second operation waits up to lock_timeout, then fails clearly."""
        self.make_dir(self.root)
        path = os.path.join(self.root, '.lock')
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.time() + self.lock_timeout
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except (IOError, OSError) as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.time() >= deadline:
                        raise LockTimeout(
                            "another operation on domain '%s' holds its lock (%s); gave up after "
                            "lock_timeout=%ss" % (self.vm_name, path, self.lock_timeout),
                            domain=self.vm_name)
                    time.sleep(0.1)
            os.ftruncate(fd, 0)
            os.write(fd, ('%d\n' % os.getpid()).encode())
            yield
        finally:
            os.close(fd)   # closing releases the flock

    # -- tree ---------------------------------------------------------------------------------
    def load(self):
        try:
            with open(self.tree_path) as f:
                data = json.load(f)
        except (IOError, OSError) as e:
            if e.errno == errno.ENOENT:
                return Tree(self.vm_name)
            raise
        except ValueError as e:
            raise StoreCorrupt('the store file %s is not valid JSON (%s); it was not changed' % (self.tree_path, e))
        return Tree.from_dict(data)

    def save(self, tree):
        """Write the tree, then each snapshot's own record (the tree file is the one that counts)."""
        self.make_dir(self.root)
        self.replace(self.tree_path, json.dumps(tree.to_dict(), indent=1, sort_keys=True))
        for snap in tree.snapshots.values():
            directory = self.snapshot_dir(snap.id)
            if os.path.isdir(directory):
                self.replace(os.path.join(directory, 'metadata.json'), json.dumps(snap.to_dict(), indent=1, sort_keys=True))

    def save_snapshot_xml(self, snap_id, xml):
        self.make_dir(self.snapshot_dir(snap_id))
        self.replace(self.xml_path(snap_id), xml)

    def snapshot_xml(self, snap_id):
        try:
            with open(self.xml_path(snap_id)) as f:
                return f.read()
        except (IOError, OSError):
            return None
