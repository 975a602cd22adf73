# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Memory files at rest: compressed (zstd) and/or encrypted (AES-256-GCM), streamed in constant memory.

A libvirt save image (what libvirt writes for a snapshot's RAM) is turned into a "nova memory file"
and back. Layout, all integers big-endian:

    header   magic b'NOVAMEM1' | version (1 byte) | flags (1 byte: 1 encrypted, 2 zstd)
             | chunk size (4 bytes) | salt (16 bytes) | key check (16 bytes; zeros when not encrypted)
    body     not encrypted: the zstd stream (its frames carry a checksum)
             encrypted: chunks, each: length (4 bytes) | AES-GCM ciphertext and tag of up to
             `chunk size` bytes of the (compressed) stream

The AES key is scrypt(key file bytes, salt): a new salt per file gives a new key per file, so the
nonce of chunk i is simply i (8 bytes) | final flag (1 byte) | 3 zero bytes. Every chunk
authenticates the header as associated data, so an edited header, a changed, dropped, reordered or
appended chunk or a cut file is an error, never wrong RAM: the last chunk carries the final flag and
nothing may follow it. The key check is the GCM tag of an empty message under the derived key: a
wrong key is told apart from a damaged file before any byte is written.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import struct
import traceback

from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Failed, Refused

CRYPTOGRAPHY_IMPORT_ERROR = None
try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

ZSTD_IMPORT_ERROR = None
try:
    import zstandard
    from zstandard import ZstdError
    HAS_ZSTD = True
except ImportError:
    HAS_ZSTD = False

    class ZstdError(Exception):
        pass
    ZSTD_IMPORT_ERROR = traceback.format_exc()

MAGIC = b'NOVAMEM1'
VERSION = 1
ENCRYPTED = 1
ZSTD = 2
CHUNK = 1024 * 1024
ZSTD_LEVEL = 3
_HEAD = struct.Struct('>8sBBI16s16s')
_LEN = struct.Struct('>I')
_KEYCHECK_NONCE = b'\xff' * 12
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1


class BadMemoryFile(Failed):
    """A nova memory file that is damaged, cut short or tampered with."""


class WrongKey(Refused):
    """The key file does not open this memory file."""


def is_encoded(path):
    """True when `path` is a nova memory file (not a plain libvirt save image)."""
    with open(path, 'rb') as f:
        return f.read(len(MAGIC)) == MAGIC


def describe(path):
    """(encrypted, compression) of a nova memory file; (False, 'none') for a plain save image."""
    with open(path, 'rb') as f:
        head = f.read(_HEAD.size)
    if head[:len(MAGIC)] != MAGIC:
        return False, 'none'
    flags = _HEAD.unpack(head)[2]
    return bool(flags & ENCRYPTED), 'zstd' if flags & ZSTD else 'none'


def _derive(key, salt):
    return AESGCM(Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(key))


def _nonce(index, final):
    return struct.pack('>QB3x', index, 1 if final else 0)


class _Sealer(object):
    """Buffers bytes into chunks and writes each sealed (or as is, when not encrypting)."""

    def __init__(self, out, aead, header, chunk):
        self.out, self.aead, self.header, self.chunk = out, aead, header, chunk
        self.buf = bytearray()
        self.index = 0

    def write(self, data):
        if self.aead is None:
            self.out.write(data)
            return
        self.buf += data
        while len(self.buf) > self.chunk:      # keep at least one byte back: the last chunk is final
            self._seal(bytes(self.buf[:self.chunk]), False)
            del self.buf[:self.chunk]

    def _seal(self, data, final):
        sealed = self.aead.encrypt(_nonce(self.index, final), data, self.header)
        self.out.write(_LEN.pack(len(sealed)))
        self.out.write(sealed)
        self.index += 1

    def close(self):
        if self.aead is not None:
            self._seal(bytes(self.buf), True)
            self.buf = bytearray()


def encode(source, dest, key=None, compression='none', chunk=CHUNK):
    """Write the nova memory file `dest` from the file `source` (a save image): zstd-compressed when
    `compression` is 'zstd', then encrypted when `key` (bytes) is given. `dest` is fsynced."""
    if key is None and compression == 'none':
        raise ValueError('nothing to encode')
    flags = (ENCRYPTED if key is not None else 0) | (ZSTD if compression == 'zstd' else 0)
    salt = os.urandom(16)
    aead = None
    check = b'\0' * 16
    if key is not None:
        aead = _derive(key, salt)
        check = aead.encrypt(_KEYCHECK_NONCE, b'', MAGIC + salt)
    header = _HEAD.pack(MAGIC, VERSION, flags, chunk, salt, check)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'wb') as out, open(source, 'rb') as src:
        out.write(header)
        sealer = _Sealer(out, aead, header, chunk)
        comp = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compressobj() if flags & ZSTD else None
        while True:
            data = src.read(CHUNK)
            if not data:
                break
            sealer.write(comp.compress(data) if comp is not None else data)
        if comp is not None:
            sealer.write(comp.flush())
        sealer.close()
        out.flush()
        os.fsync(out.fileno())


def _read_exactly(f, n):
    data = f.read(n)
    return data if len(data) == n else None


def _chunks(f, path, aead, header, chunk):
    """The plaintext chunks of an encrypted body, authenticated, in order, ending with the final one."""
    index = 0
    while True:
        raw = _read_exactly(f, _LEN.size)
        if raw is None:
            raise BadMemoryFile('%s is cut short: its last encrypted chunk is missing (the file was truncated)' % path)
        length = _LEN.unpack(raw)[0]
        if length < 16 or length > chunk + 16:
            raise BadMemoryFile('%s is damaged: chunk %d has an impossible length %d' % (path, index, length))
        sealed = _read_exactly(f, length)
        if sealed is None:
            raise BadMemoryFile('%s is cut short inside chunk %d (the file was truncated)' % (path, index))
        final = f.peek(1)[:1] == b'' if hasattr(f, 'peek') else None
        try:
            data = aead.decrypt(_nonce(index, final), sealed, header)
        except InvalidTag:
            if not final:
                try:
                    aead.decrypt(_nonce(index, True), sealed, header)
                    raise BadMemoryFile('%s has data after its final chunk (appended to)' % path)
                except InvalidTag:
                    pass
            raise BadMemoryFile('%s is damaged or was tampered with: chunk %d does not authenticate%s'
                                % (path, index, ' (or the file was truncated after it)' if final else ''))
        yield data
        if final:
            return
        index += 1


def decode(source, dest, key=None):
    """Write the plain save image of the nova memory file `source` into `dest` (created 0600).

    `key` is given exactly when the snapshot is recorded encrypted, so a clear file in place of an
    encrypted one is refused too. Nothing is written when the key is wrong or missing; a damaged file
    raises BadMemoryFile (`dest` is then removed)."""
    with open(source, 'rb') as f:
        head = f.read(_HEAD.size)
        if len(head) < _HEAD.size or head[:len(MAGIC)] != MAGIC:
            raise BadMemoryFile('%s is not a nova memory file (bad header)' % source)
        _magic, version, flags, chunk, salt, check = _HEAD.unpack(head)
        if version != VERSION or not flags or flags & ~(ENCRYPTED | ZSTD):
            raise BadMemoryFile('%s: unsupported nova memory file (version %d, flags %d)' % (source, version, flags))
        if key is not None and not flags & ENCRYPTED:
            # the snapshot was recorded encrypted: a clear file in its place was swapped in
            raise BadMemoryFile('%s should be encrypted and is not; refusing to restore it' % source)
        aead = None
        if flags & ENCRYPTED:
            if key is None:
                raise Refused('the memory file %s is encrypted: give key_file' % source)
            aead = _derive(key, salt)
            try:
                aead.decrypt(_KEYCHECK_NONCE, check, MAGIC + salt)
            except InvalidTag:
                raise WrongKey('the key file does not open the memory file %s (wrong key); nothing was changed' % source)
        if flags & ZSTD and not HAS_ZSTD:
            raise Refused('the memory file %s is zstd-compressed and the Python library zstandard is missing' % source)
        pieces = _chunks(f, source, aead, head, chunk) if aead is not None else iter(lambda: f.read(CHUNK), b'')
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, 'wb') as out:
                dec = zstandard.ZstdDecompressor().decompressobj() if flags & ZSTD else None
                for piece in pieces:
                    out.write(dec.decompress(piece) if dec is not None else piece)
                if dec is not None and not dec.eof:
                    raise BadMemoryFile('%s is cut short: its compressed stream does not end' % source)
                out.flush()
                os.fsync(out.fileno())
        except ZstdError as e:
            os.unlink(dest)
            raise BadMemoryFile('%s is damaged: %s' % (source, e))
        except BaseException:
            os.unlink(dest)
            raise
