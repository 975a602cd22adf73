# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Files of an export: checksums, USTAR archives, and reading a bundle or OVA in place.

A tar is never unpacked to be read: its members are plain byte ranges of the archive, so
qemu-img opens a disk inside it through a `raw` layer with an offset, and checksums are taken
over the same ranges. Everything written goes under a `.partial` name first.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import shutil
import tarfile

from ansible_collections.nova.snapshots.plugins.module_utils.model._bundle import BundleInvalid, safe_member

CHUNK = 4 * 1024 * 1024
IMAGE_EXTENSIONS = ('.qcow2', '.vmdk', '.raw', '.img')


def sha256_range(path, offset=0, length=None):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        f.seek(offset)
        left = length
        while left is None or left > 0:
            block = f.read(CHUNK if left is None else min(CHUNK, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
    return h.hexdigest()


def copy_hashed(src, dest, mode=0o600):
    """Copy `src` to a new file `dest` (fsynced) and return the SHA-256 of what was written."""
    h = hashlib.sha256()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, 'wb') as out, open(src, 'rb') as f:
        while True:
            block = f.read(CHUNK)
            if not block:
                break
            h.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return h.hexdigest()


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path, text, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def remove(path):
    """Remove a file or directory tree if it is there."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def replace(partial, final, force):
    """Move a finished `partial` (file or directory) to `final`; an old `final` goes only with `force`."""
    if os.path.lexists(final):
        if not force:
            raise BundleInvalid('%s exists; set force to replace it' % final)
        old = final + '.old'
        remove(old)
        os.rename(final, old)
        os.rename(partial, final)
        remove(old)
    else:
        os.rename(partial, final)
    fsync_path(os.path.dirname(os.path.abspath(final)) or '.')


def write_tar(dest, directory, names):
    """A USTAR archive `dest` of the files `names` (in that order) from `directory`; each file is
    removed once it is in the archive, so the space needed peaks at the archive plus one file."""
    with tarfile.open(dest, 'w', format=tarfile.USTAR_FORMAT) as tar:
        for name in names:
            path = os.path.join(directory, name)
            info = tar.gettarinfo(path, arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = 'root'
            info.mode = 0o644 if name != 'memory.save' else 0o600
            with open(path, 'rb') as f:
                tar.addfile(info, f)
            os.unlink(path)
    fsync_path(dest)


class Source(object):
    """A bundle or OVA to read: a directory of files, or one uncompressed tar of them."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.members = {}          # name -> (file, offset, size)
        if os.path.isdir(self.path):
            self.kind = 'directory'
            for name in sorted(os.listdir(self.path)):
                full = os.path.join(self.path, name)
                if not os.path.isfile(full) or os.path.islink(full):
                    raise BundleInvalid('%s holds %s, which is not a plain file' % (self.path, name))
                self.members[safe_member(name, self.path)] = (full, 0, os.path.getsize(full))
            self.order = sorted(self.members)
        elif os.path.isfile(self.path) and os.path.splitext(self.path)[1].lower() in IMAGE_EXTENSIONS:
            self.kind = 'file'          # one disk image, on its own
            self.members[os.path.basename(self.path)] = (self.path, 0, os.path.getsize(self.path))
            self.order = list(self.members)
        elif os.path.isfile(self.path):
            self.kind = 'tar'
            self.order = []
            self._read_tar()
        else:
            raise BundleInvalid('%s does not exist' % self.path)

    def _read_tar(self):
        total = os.path.getsize(self.path)
        try:
            with tarfile.open(self.path, 'r:') as tar:
                members = tar.getmembers()
        except (tarfile.TarError, EOFError) as e:
            raise BundleInvalid('%s is not a readable uncompressed tar archive (%s)' % (self.path, e))
        for m in members:
            if not m.isfile():
                raise BundleInvalid('%s holds %s, which is not a plain file' % (self.path, m.name))
            name = safe_member(m.name, self.path)
            if m.offset_data + m.size > total:
                raise BundleInvalid('%s is truncated: member %s ends at byte %d, the file has %d'
                                    % (self.path, name, m.offset_data + m.size, total), file=name)
            self.members[name] = (self.path, m.offset_data, m.size)
            self.order.append(name)

    def has(self, name):
        return name in self.members

    def size(self, name):
        return self.members[name][2]

    def read(self, name, limit=16 * 1024 * 1024):
        path, offset, size = self.members[name]
        if size > limit:
            raise BundleInvalid('%s in %s is too large to be a description (%d bytes)' % (name, self.path, size))
        with open(path, 'rb') as f:
            f.seek(offset)
            return f.read(size).decode('utf-8')

    def sha256(self, name):
        path, offset, size = self.members[name]
        return sha256_range(path, offset, size)

    def file_spec(self, name):
        """The qemu block 'file' layer that shows member `name` as a file of its own."""
        path, offset, size = self.members[name]
        spec = {'driver': 'file', 'filename': path}
        if self.kind == 'tar':
            spec = {'driver': 'raw', 'offset': offset, 'size': size, 'file': spec}
        return spec

    def copy_to(self, name, dest):
        path, offset, size = self.members[name]
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'wb') as out, open(path, 'rb') as src:
            src.seek(offset)
            left = size
            while left > 0:
                block = src.read(min(CHUNK, left))
                if not block:
                    raise BundleInvalid('%s ended early while copying %s' % (self.path, name))
                out.write(block)
                left -= len(block)
            out.flush()
            os.fsync(out.fileno())
