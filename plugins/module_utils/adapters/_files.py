# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Files on the hypervisor: crash-safe replacement, free space, usage.

One owner for the two rules every writer follows: a reader never sees half a file under its
final name (write a temporary file, fsync it, rename it, fsync the directory), and an operation
that writes a lot checks the destination's free space first, with one message shape.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._trace import current
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import InsufficientSpace

OVERLAY_RESERVE = 8 * 1024 * 1024     # free space wanted per new overlay (its header and first writes)
MEMORY_MARGIN = 1.1                   # a memory file can exceed guest RAM a little (device state)


def fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def install(tmp, path):
    """Move the finished file `tmp` to `path` durably: fsync it, rename over `path`, fsync the directory."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    fsync_dir(os.path.dirname(path) or '.')


def copy_file(source, dest, mode=0o600):
    """Copy `source` to `dest` crash-safely (a small file, such as a UEFI NVRAM store)."""
    with open(source, 'rb') as f:
        replace_file(dest, f.read(), mode)


def replace_file(path, data, mode=0o600):
    """Replace `path` with `data` (str or bytes); a crash leaves the old or the new file, never half.

    The file is created with `mode` (not created open and narrowed later). A file that exists keeps
    its owner and mode (those nova_snapshot owner/group/mode set survive the next metadata write)."""
    with current().phase('store', 'writing %s' % path):
        _write_new(path, data, mode)


def _write_new(path, data, mode):
    directory = os.path.dirname(path)
    tmp = os.path.join(directory, '.%s.tmp-%d' % (os.path.basename(path), os.getpid()))
    if isinstance(data, str):
        data = data.encode('utf-8')
    try:
        st = os.stat(path)
        mode, owner = stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
    except OSError:
        owner = None
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode & 0o700)
    try:
        with os.fdopen(fd, 'wb') as f:
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                os.fchown(f.fileno(), owner[0], owner[1])
            os.fchmod(f.fileno(), mode)
            f.write(data)
        install(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def free_bytes(path):
    """Bytes available to us on the filesystem of `path` (its nearest existing parent)."""
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def disk_usage(path):
    """Bytes `path` takes on disk (sparse files count what is allocated), None when it is missing."""
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return None


def require_free(directory, need, what):
    """Raise InsufficientSpace unless `directory`'s filesystem has `need` bytes free for `what`."""
    free = free_bytes(directory)
    if free < need:
        raise InsufficientSpace(directory, int(need), free, what)
