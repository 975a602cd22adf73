# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nova memory file format: round trips, and every kind of damage is an error, never wrong RAM."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._memory_codec import (
    BadMemoryFile, WrongKey, decode, describe, encode, is_encoded)
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused

KEY = b'correct horse battery staple\n'
CHUNK = 4096        # small chunks, so a few KiB of data make several


@pytest.fixture
def plain(tmp_path):
    path = tmp_path / 'memory.raw'
    # compressible and incompressible parts, not a multiple of the chunk size
    path.write_bytes(b'LibvirtQemudSave' + b'secret-marker ' * 1000 + os.urandom(3 * CHUNK + 123))
    return path


@pytest.mark.parametrize('key,compression', [(KEY, 'none'), (KEY, 'zstd'), (None, 'zstd')])
def test_round_trip(tmp_path, plain, key, compression):
    enc, out = tmp_path / 'memory.save', tmp_path / 'back.raw'
    encode(str(plain), str(enc), key=key, compression=compression, chunk=CHUNK)
    assert is_encoded(str(enc)) and not is_encoded(str(plain))
    assert describe(str(enc)) == (key is not None, compression)
    assert stat.S_IMODE(enc.stat().st_mode) == 0o600
    if key is not None:
        assert b'secret-marker' not in enc.read_bytes()
    decode(str(enc), str(out), key=key)
    assert out.read_bytes() == plain.read_bytes()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_empty_file_round_trips(tmp_path):
    src, enc, out = tmp_path / 'empty', tmp_path / 'enc', tmp_path / 'out'
    src.write_bytes(b'')
    encode(str(src), str(enc), key=KEY, chunk=CHUNK)
    decode(str(enc), str(out), key=KEY)
    assert out.read_bytes() == b''


def _encoded(tmp_path, plain, compression='none'):
    enc = tmp_path / 'memory.save'
    encode(str(plain), str(enc), key=KEY, compression=compression, chunk=CHUNK)
    return enc


def test_wrong_key_is_told_apart_and_writes_nothing(tmp_path, plain):
    enc, out = _encoded(tmp_path, plain), tmp_path / 'out'
    with pytest.raises(WrongKey, match='wrong key'):
        decode(str(enc), str(out), key=b'another key\n')
    assert not out.exists()


def test_missing_key_is_refused(tmp_path, plain):
    enc = _encoded(tmp_path, plain)
    with pytest.raises(Refused, match='encrypted: give key_file'):
        decode(str(enc), str(tmp_path / 'out'), key=None)


@pytest.mark.parametrize('where', ['header_flags', 'salt', 'first_chunk', 'middle_chunk', 'last_byte', 'length'])
def test_tampered_byte_is_an_error(tmp_path, plain, where):
    enc, out = _encoded(tmp_path, plain), tmp_path / 'out'
    data = bytearray(enc.read_bytes())
    pos = {'header_flags': 9, 'salt': 20, 'first_chunk': 46 + 4 + 10, 'middle_chunk': len(data) // 2,
           'last_byte': len(data) - 1, 'length': 46 + 1}[where]
    data[pos] ^= 0x01
    enc.write_bytes(bytes(data))
    with pytest.raises((BadMemoryFile, WrongKey)):
        decode(str(enc), str(out), key=KEY)
    assert not out.exists()


@pytest.mark.parametrize('compression', ['none', 'zstd'])
@pytest.mark.parametrize('cut', ['chunk_boundary', 'inside_chunk', 'header'])
def test_truncation_is_an_error(tmp_path, plain, cut, compression):
    enc, out = _encoded(tmp_path, plain, compression), tmp_path / 'out'
    data = enc.read_bytes()
    size = {'chunk_boundary': 46 + (4 + CHUNK + 16), 'inside_chunk': len(data) - 7, 'header': 30}[cut]
    enc.write_bytes(data[:size])
    with pytest.raises(BadMemoryFile):
        decode(str(enc), str(out), key=KEY)
    assert not out.exists()


def test_appended_data_is_an_error(tmp_path, plain):
    enc, out = _encoded(tmp_path, plain), tmp_path / 'out'
    data = enc.read_bytes()
    enc.write_bytes(data + data[46:46 + 4 + CHUNK + 16])
    with pytest.raises(BadMemoryFile):
        decode(str(enc), str(out), key=KEY)


def test_reordered_chunks_are_an_error(tmp_path, plain):
    enc, out = _encoded(tmp_path, plain), tmp_path / 'out'
    data = enc.read_bytes()
    one = 4 + CHUNK + 16
    first, second = data[46:46 + one], data[46 + one:46 + 2 * one]
    enc.write_bytes(data[:46] + second + first + data[46 + 2 * one:])
    with pytest.raises(BadMemoryFile):
        decode(str(enc), str(out), key=KEY)


def test_compressed_only_file_detects_damage(tmp_path, plain):
    enc, out = tmp_path / 'memory.save', tmp_path / 'out'
    encode(str(plain), str(enc), compression='zstd', chunk=CHUNK)
    data = enc.read_bytes()
    enc.write_bytes(data[:-5])
    with pytest.raises(BadMemoryFile):
        decode(str(enc), str(out))


def test_clear_file_swapped_in_for_an_encrypted_one_is_refused(tmp_path, plain):
    enc, out = tmp_path / 'memory.save', tmp_path / 'out'
    encode(str(plain), str(enc), compression='zstd', chunk=CHUNK)
    with pytest.raises(BadMemoryFile, match='should be encrypted'):
        decode(str(enc), str(out), key=KEY)
    assert not out.exists()
