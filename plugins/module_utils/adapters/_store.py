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

A store follows its domain by UUID: `<storage_dir>/.by-uuid/<uuid>` links to the directory, so a
domain renamed with `virsh domrename` keeps its history (in the directory named when it began), and
a new domain that reuses an old name never shares the old one's store (it gets `<vm>.<uuid8>`).

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
import socket
import time
from contextlib import contextmanager

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import replace_file
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._trace import current
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Conflict, Failed, NotFound
from ansible_collections.nova.snapshots.plugins.module_utils.model._tree import Tree


def _content(path):
    """The text of a small file of the store, or None when it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError, UnicodeDecodeError):
        return None


def _parsed(path):
    """The JSON of a small file of the store, or None when it cannot be read or parsed."""
    text = _content(path)
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return None


class LockTimeout(Conflict):
    pass


class StoreCorrupt(Failed):
    pass


def boot_id():
    """This boot's id: a lock taken before a reboot is not held by anyone now."""
    try:
        with open('/proc/sys/kernel/random/boot_id') as f:
            return f.read().strip()
    except (IOError, OSError):
        return None


def describe_holder(holder):
    if not holder:
        return ''
    since = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(holder['since'])) if holder.get('since') else 'an unknown time'
    what = holder.get('operation') or 'an operation'
    return ': %s by pid %s on %s since %s' % (what, holder.get('pid'), holder.get('host') or 'this host', since)


class Store(object):
    """One domain's part of the store."""

    def __init__(self, storage_dir, vm_name, owner=None, lock_timeout=60, uuid=None):
        self.storage_dir = storage_dir
        self.vm_name = vm_name
        self.uuid = uuid
        self.root = self._find_root()
        self.owner = owner          # (uid, gid) QEMU runs as, or None to keep root's
        self.lock_timeout = lock_timeout

    # -- which directory is this domain's -------------------------------------------------------
    def _index(self):
        return os.path.join(self.storage_dir, '.by-uuid', self.uuid) if self.uuid else None

    def _find_root(self):
        by_name = os.path.join(self.storage_dir, self.vm_name)
        if not self.uuid:
            return by_name
        try:
            linked = os.path.join(os.path.dirname(self._index()), os.readlink(self._index()))
            if os.path.isdir(linked):
                return os.path.normpath(linked)
        except OSError:
            pass
        owner = self._recorded_uuid(by_name)
        if owner is not None and owner != self.uuid:
            return '%s.%s' % (by_name, self.uuid[:8])       # the name's store belongs to another domain
        return by_name

    @staticmethod
    def _recorded_uuid(root):
        try:
            with open(os.path.join(root, 'metadata.json')) as f:
                return json.load(f).get('vm_uuid')
        except (IOError, OSError, ValueError):
            return None

    def _link(self):
        """Point the UUID index at this directory (once; a rename keeps it)."""
        index = self._index()
        if not index or os.path.islink(index):
            return
        parent = os.path.dirname(index)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o700)
        tmp = '%s.tmp-%d' % (index, os.getpid())
        os.symlink(os.path.join('..', os.path.basename(self.root)), tmp)
        os.rename(tmp, index)

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

    def nvram_path(self, snap_id):
        return os.path.join(self.snapshot_dir(snap_id), 'nvram.fd')

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
    def lock(self, operation=None):
        """Hold the domain's lock; a second operation waits up to lock_timeout, then fails with the
        holder's details (operation, pid, host, since), which the lock file keeps while it is held."""
        self.make_dir(self.root)
        path = self.lock_path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            with current().phase('lock_wait', "taking domain '%s''s lock" % self.vm_name):     # timings
                self._acquire(fd, path)
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(dict(pid=os.getpid(), host=socket.gethostname(), operation=operation,
                                         since=int(time.time()), boot_id=boot_id())).encode())
            yield
            os.ftruncate(fd, 0)     # released: the file must not name a past holder as the present one
        finally:
            os.close(fd)   # closing releases the flock

    def _acquire(self, fd, path):
        deadline = time.time() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except (IOError, OSError) as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.time() >= deadline:
                    holder = self.lock_holder()
                    raise LockTimeout(
                        "another operation on domain '%s' holds its lock (%s)%s; gave up after "
                        "lock_timeout=%ss" % (self.vm_name, path, describe_holder(holder), self.lock_timeout),
                        domain=self.vm_name, holder=holder)
                time.sleep(0.1)

    @property
    def lock_path(self):
        return os.path.join(self.root, '.lock')

    def lock_holder(self):
        """What the lock file says of the last holder ({pid, host, operation, since, boot_id}), or None."""
        try:
            with open(self.lock_path) as f:
                text = f.read()
        except (IOError, OSError):
            return None
        try:
            return json.loads(text)
        except ValueError:
            return dict(pid=int(text)) if text.strip().isdigit() else None

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
        tree = Tree.from_dict(data)
        if tree.vm_name != self.vm_name:        # renamed since: the records follow the domain
            tree.vm_name = self.vm_name
            for snap in tree.snapshots.values():
                snap.vm_name = self.vm_name
        return tree

    def save(self, tree):
        """Write the tree, then each snapshot's own record (the tree file is the one that counts)."""
        self.make_dir(self.root)
        data = tree.to_dict()
        if self.uuid:
            data['vm_uuid'] = self.uuid
        # one line, through the C encoder (indent makes json.dumps pure Python: 0.07 s at 200 snapshots,
        # paid by every change); `jq . <file>` shows it indented
        self.replace(self.tree_path, json.dumps(data, sort_keys=True) + '\n')
        self._link()
        for snap in tree.snapshots.values():
            directory = self.snapshot_dir(snap.id)
            if os.path.isdir(directory):
                path, record = os.path.join(directory, 'metadata.json'), snap.to_dict()
                # Unchanged records are not rewritten: a save costs O(changed) fsyncs, not O(snapshots).
                # Compared parsed, through the C encoder and parser: json.dumps with indent is pure
                # Python, 0.7 ms a record, which made every save of a 500-snapshot tree 0.35 s longer.
                if _parsed(path) != json.loads(json.dumps(record)):
                    self.replace(path, json.dumps(record, indent=1, sort_keys=True))

    def save_snapshot_xml(self, snap_id, xml):
        self.make_dir(self.snapshot_dir(snap_id))
        self.replace(self.xml_path(snap_id), xml)

    def snapshot_xml(self, snap_id):
        try:
            with open(self.xml_path(snap_id)) as f:
                return f.read()
        except (IOError, OSError):
            return None
