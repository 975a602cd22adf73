# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""The audit trail on disk: `<storage_dir>/audit.log`, rotated to `audit.log.1`, `.2`, ... by size.

Every domain of a storage_dir appends to the same file, so appends take their own lock,
`<storage_dir>/.audit.lock` (flock). The lock is a separate file, not audit.log itself: a rotation
renames audit.log, and a writer waiting on the old file's lock would then append to the rotated one.
Under the lock: read the last line's hash (from audit.log.1 right after a rotation, so the chain
carries across files), rotate if the file is full, append one line, fsync. The files are 0600.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fcntl
import os
import socket

from ansible_collections.nova.snapshots.plugins.module_utils.model._audit import GENESIS, head_of, seal

AUDIT_FILE = 'audit.log'
LOCK_FILE = '.audit.lock'
SYSLOG_FACILITY_AUTHPRIV = 10
SYSLOG_INFO = 6


def last_line(path):
    """The last non-empty line of `path` (bytes), or None when it has none or does not exist."""
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            step = 4096
            while True:
                start = max(0, end - step)
                f.seek(start)
                lines = [line for line in f.read(end - start).split(b'\n') if line.strip()]
                if len(lines) > 1 or start == 0:
                    return lines[-1] if lines else None
                step *= 4
    except (IOError, OSError):
        return None


class AuditLog(object):
    def __init__(self, storage_dir, max_bytes=10 * 2 ** 20, keep=10):
        self.storage_dir = storage_dir
        self.path = os.path.join(storage_dir, AUDIT_FILE)
        self.max_bytes = max_bytes
        self.keep = keep

    def rotated(self, n):
        return '%s.%d' % (self.path, n)

    def files(self):
        """The trail's files, oldest first (audit.log.N ... audit.log.1, audit.log)."""
        older = []
        n = 1
        while os.path.exists(self.rotated(n)):
            older.append(self.rotated(n))
            n += 1
        return list(reversed(older)) + ([self.path] if os.path.exists(self.path) else [])

    def head(self):
        """(hash, seq) of the trail's last line; (GENESIS, 0) for an empty trail."""
        for path in reversed(self.files()):
            line = last_line(path)
            if line is not None:
                return head_of(line)
        return GENESIS, 0

    def _rotate(self):
        """audit.log -> audit.log.1 -> .2 ...; the oldest beyond `keep` is removed."""
        oldest = self.rotated(self.keep)
        if os.path.exists(oldest):
            os.unlink(oldest)
        for n in range(self.keep - 1, 0, -1):
            if os.path.exists(self.rotated(n)):
                os.rename(self.rotated(n), self.rotated(n + 1))
        os.rename(self.path, self.rotated(1))

    def append(self, record):
        """Seal `record` onto the chain and append it durably; returns the line written (bytes)."""
        if not os.path.isdir(self.storage_dir):
            # 0755 as the store makes it: QEMU must pass through it to the domains' private directories
            os.makedirs(self.storage_dir, 0o755)
        lock = os.open(os.path.join(self.storage_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            prev_hash, prev_seq = self.head()
            line = seal(record, prev_hash, prev_seq)
            if os.path.exists(self.path) and os.path.getsize(self.path) + len(line) + 1 > self.max_bytes:
                self._rotate()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line + b'\n')
                os.fsync(fd)
            finally:
                os.close(fd)
            return line
        finally:
            os.close(lock)      # closing releases the flock

    def read(self):
        """[(path, [line bytes])] oldest first, for model._audit.verify."""
        out = []
        for path in self.files():
            with open(path, 'rb') as f:
                out.append((path, [line for line in f.read().split(b'\n') if line.strip()]))
        return out


def forward_to_syslog(line, address='/dev/log', ident='nova.snapshots'):
    """Send one audit line to the local syslog socket (RFC 3164 framing, facility authpriv), as
    syslog(3) would; `address` is the socket's path (a test binds its own). Raises OSError."""
    message = b'<%d>%s[%d]: ' % (SYSLOG_FACILITY_AUTHPRIV * 8 + SYSLOG_INFO, ident.encode(), os.getpid()) + line
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.connect(address)
        sock.send(message)
    finally:
        sock.close()
