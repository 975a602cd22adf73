# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Files, byte for byte: streaming checksums, libvirt save image headers, and the per-snapshot
checksum file of the store.

    <storage_dir>/<vm>/snapshots/<id>/checksums.json

holds, per file the snapshot froze: path, size, mtime, algorithm, digest, backing, recorded_at,
verified_at, result, plus the snapshot's last verification (`last`) and, for a snapshot recreated
from its parent, `recreated_from`. It is written atomically (_files.replace_file) and is
removed with the snapshot's directory.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import hashlib
import json
import os
import struct
import time
import traceback

from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Failed, Refused
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import replace_file

try:
    import blake3 as _blake3
except ImportError:
    HAS_BLAKE3 = False
    BLAKE3_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_BLAKE3 = True
    BLAKE3_IMPORT_ERROR = None

ALGORITHMS = ('sha256', 'blake3')
BLOCK = 8 * 1024 * 1024          # large reads: one syscall per 8 MiB keeps hashing at the disk's speed

# libvirt's save image header (src/qemu/qemu_saveimage.h): 16-byte magic, then uint32 version,
# data_len, was_running, compressed, cookieOffset and 14 unused, in the host's byte order.
SAVE_MAGIC = b'LibvirtQemudSave'
SAVE_PARTIAL = b'LibvirtQemudPart'
SAVE_HEADER = struct.Struct('=16s5I56x')


class MissingLibrary(Refused):
    pass


def check_algorithm(algorithm):
    """Refuse an algorithm this hypervisor cannot compute, before anything is done."""
    if algorithm == 'blake3' and not HAS_BLAKE3:
        raise MissingLibrary('checksum=blake3 needs the blake3 Python package on the hypervisor '
                             '(pip install blake3 into the Python that runs the modules)', library='blake3')
    if algorithm not in ALGORITHMS + ('none', None):
        raise Refused("unknown checksum algorithm '%s' (use one of %s)" % (algorithm, ', '.join(ALGORITHMS)))


def hasher(algorithm):
    if algorithm == 'sha256':
        return hashlib.sha256()
    if algorithm == 'blake3':
        check_algorithm(algorithm)
        # max_threads: the Rust side hashes one buffer on several cores
        return _blake3.blake3(max_threads=_blake3.blake3.AUTO)
    raise Refused("unknown checksum algorithm '%s' (use one of %s)" % (algorithm, ', '.join(ALGORITHMS)))


class Throttle(object):
    """Keeps the reads of one run below `limit` bytes per second (None: no limit)."""

    def __init__(self, limit=None, clock=time.monotonic, sleep=time.sleep):
        self.limit = limit
        self.clock = clock
        self.sleep = sleep
        self.start = clock()
        self.done = 0

    def account(self, nbytes):
        self.done += nbytes
        if self.limit:
            ahead = self.done / float(self.limit) - (self.clock() - self.start)
            if ahead > 0:
                self.sleep(ahead)


def file_digest(path, algorithm, throttle=None, block=BLOCK):
    """(hex digest, bytes read) of the whole file, read sequentially in large blocks."""
    digests, total = file_digests(path, [algorithm], throttle, block)
    return digests[algorithm], total


def file_digests(path, algorithms, throttle=None, block=BLOCK):
    """({algorithm: hex digest}, bytes read): every algorithm over one sequential read of the file."""
    hashers = [(a, hasher(a)) for a in algorithms]
    if algorithms == ['blake3'] and not (throttle and throttle.limit) and hasattr(hashers[0][1], 'update_mmap'):
        # unthrottled BLAKE3 alone: let the Rust side map the file and hash it on every core
        size = os.path.getsize(path)
        hashers[0][1].update_mmap(path)
        if throttle is not None:
            throttle.account(size)
        return dict(blake3=hashers[0][1].hexdigest()), size
    buf = bytearray(block)
    view = memoryview(buf)
    total = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except (AttributeError, OSError):
            pass
        while True:
            n = os.readv(fd, [buf])
            if not n:
                break
            for _a, h in hashers:
                h.update(view[:n])
            total += n
            if throttle is not None:
                throttle.account(n)
    finally:
        os.close(fd)
    return dict((a, h.hexdigest()) for a, h in hashers), total


def file_facts(path):
    """{size, mtime} of a file, or None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        raise
    return dict(size=st.st_size, mtime=int(st.st_mtime))


def save_header(path):
    """What the header of a libvirt save image says: {magic, complete, version, data_len, was_running,
    compressed, min_size}; None when the file is too short to hold a header."""
    with open(path, 'rb') as f:
        raw = f.read(SAVE_HEADER.size)
    if len(raw) < SAVE_HEADER.size:
        return None
    magic, version, data_len, was_running, compressed, _cookie = SAVE_HEADER.unpack(raw)
    return dict(magic=magic.decode('latin-1'), complete=magic == SAVE_MAGIC, partial=magic == SAVE_PARTIAL,
                version=version, data_len=data_len, was_running=was_running, compressed=compressed,
                min_size=SAVE_HEADER.size + data_len)


class ChecksumFile(object):
    """The checksums.json of one snapshot (see the module docstring)."""

    NAME = 'checksums.json'

    def __init__(self, snapshot_dir):
        self.dir = snapshot_dir
        self.path = os.path.join(snapshot_dir, self.NAME)

    def load(self):
        try:
            with open(self.path) as f:
                data = json.load(f)
        except (IOError, OSError) as e:
            if e.errno == errno.ENOENT:
                return dict(files={})
            raise
        except ValueError:
            # a damaged checksum file is not fatal: the snapshot is re-trusted and says so
            return dict(files={}, damaged=True)
        data.setdefault('files', {})
        return data

    def save(self, data):
        if not os.path.isdir(self.dir):
            raise Failed('snapshot directory %s is missing; cannot record checksums' % self.dir)
        data = dict(data)
        data.pop('damaged', None)
        replace_file(self.path, json.dumps(data, indent=1, sort_keys=True))
