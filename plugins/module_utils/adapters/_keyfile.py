# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""The key file of an encrypted snapshot: checked (root-only readable) and read, never shown.

The file's bytes, exactly as they are (a trailing newline included), are the passphrase: QEMU reads
the same file through `--object secret,file=...`, so the libvirt secret, qemu-img and the memory
file cipher all see one and the same key.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import stat

from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NotFound, Refused

MAX_KEY_BYTES = 4096
# scrypt parameters of the key verifier kept in the store (a password hash, never the key)
_N, _R, _P = 2 ** 14, 8, 1


def read_key_file(path):
    """The key in `path` (bytes); refused when the file is missing, not a regular file, readable or
    writable by group or others, owned by another user than the one running, empty or too long."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise NotFound('key_file %s cannot be read: %s; nothing was changed' % (path, e.strerror), key_file=path)
    if not stat.S_ISREG(st.st_mode):
        raise Refused('key_file %s is not a regular file; nothing was changed' % path, key_file=path)
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o066:
        raise Refused('key_file %s has mode %04o: group or others can read or write it; make it readable by '
                      'root only (chmod 0400 %s); nothing was changed' % (path, mode, path), key_file=path)
    if st.st_uid != os.geteuid():
        raise Refused('key_file %s is owned by uid %d, not by the user running the task (uid %d); '
                      'nothing was changed' % (path, st.st_uid, os.geteuid()), key_file=path)
    with open(path, 'rb') as f:
        key = f.read(MAX_KEY_BYTES + 1)
    if not key.strip():
        raise Refused('key_file %s is empty; nothing was changed' % path, key_file=path)
    if len(key) > MAX_KEY_BYTES:
        raise Refused('key_file %s is longer than %d bytes; nothing was changed' % (path, MAX_KEY_BYTES), key_file=path)
    return key


def key_verifier(key, salt):
    """What the store keeps to tell a wrong key from the right one (scrypt of the key; hex)."""
    return hashlib.scrypt(key, salt=salt, n=_N, r=_R, p=_P, dklen=32).hex()
