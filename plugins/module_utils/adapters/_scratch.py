# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Private scratch directories that a killed task does not leave behind.

Clear data of an encrypted VM (its RAM decrypted for a restore, windows of its disks a merge
compares) is only ever in tmpfs, and only while a task needs it. A task killed (SIGKILL, an OOM, a
lost connection) cannot remove its scratch, so each directory holds an `.owner` file its process
keeps locked (flock) for as long as it lives; making a new one first removes those whose lock is
free, that is whose process is gone. flock belongs to the open file, not to a PID, so this holds
across PID namespaces (the fleet's hypervisors on one machine share /dev/shm).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fcntl
import os
import shutil
import tempfile

OWNER = '.owner'
_HELD = {}      # {directory: the locked fd of its .owner}


def make(prefix, parent=None):
    """A new directory (mode 0700) under `parent` named `prefix`...: locked as ours until remove()
    or the end of this process. Stale ones of the same prefix are removed first."""
    parent = parent or tempfile.gettempdir()
    sweep(prefix, parent)
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    fd = os.open(os.path.join(path, OWNER), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _HELD[path] = fd
    return path


def remove(path):
    shutil.rmtree(path, ignore_errors=True)
    fd = _HELD.pop(path, None)
    if fd is not None:
        os.close(fd)


def sweep(prefix, parent):
    """Remove the directories `prefix`... under `parent` whose owner is gone. One without an .owner
    file is left alone: it is being made this instant, or it is not one of these (a switch's RAM
    kept for its re-run, operations/_encryption.save_scratch)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        path = os.path.join(parent, name)
        if not name.startswith(prefix) or path in _HELD:
            continue
        try:
            fd = os.open(os.path.join(path, OWNER), os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)        # its owner runs
            continue
        try:
            if os.fstat(fd).st_uid == os.getuid():
                shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)
