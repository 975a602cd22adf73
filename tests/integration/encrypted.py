# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the tests of encrypted snapshots share: the key, proofs on the bytes of host files, and LUKS
layers read or damaged with the key (the fixtures `keys` and `crypt_guest` are in conftest.py)."""

from __future__ import annotations

import glob
import json
import os
import struct
import subprocess

from testbed import file_sha256


KEY = b'nova-test passphrase 7f3a9c\n'
TOKEN = KEY.strip().decode()


# The LUKS cost of the test domains' layers (luks_iter_time): QEMU unlocks every layer at every open,
# and a tenth of the default keeps the tests' many opens cheap; test_encryption proves the default.
ITER_TIME = 100


def key_slot_iterations(path):
    """PBKDF2 iterations of the first key slot of the LUKS qcow2 `path` (from its header)."""
    info = json.loads(subprocess.run(['qemu-img', 'info', '-U', '--output=json', path], check=True,
                                     capture_output=True, text=True).stdout)
    return [s for s in info['format-specific']['data']['encrypt']['slots'] if s['active']][0]['iters']


def contains(path, token):
    """grep on the raw bytes of a file on the host."""
    return subprocess.run(['grep', '-c', '-a', '-F', token, path], capture_output=True, check=False).returncode == 0


def store_bytes(guest):
    """{path: sha256} of every file of the guest's store (its audit trail aside) and of the images
    under its directory (its own, a tier's): a refused task must leave all of them as they were."""
    paths = glob.glob(os.path.join(guest.storage_dir, '**'), recursive=True) + \
        glob.glob(os.path.join(guest.dir, '**', '*.qcow2'), recursive=True)
    return dict((p, file_sha256(p)) for p in paths
                if os.path.isfile(p) and not os.path.islink(p) and not os.path.basename(p).startswith('audit.log'))


def raw_files(guest):
    """Every file of the guest's store (the layers the collection made, memory files, metadata)."""
    return [p for p in glob.glob(os.path.join(guest.storage_dir, '**'), recursive=True) if os.path.isfile(p)]


def assert_not_in_clear(guest, tokens, also=()):
    """None of `tokens` (markers the guest wrote, the key) in any file of the store, or in the files
    `also`, read raw."""
    for path in raw_files(guest) + list(also):
        for token in list(tokens) + [TOKEN]:
            assert not contains(path, token), '%s found in %s read raw' % (token, path)


def spec(path, key_secret='k', backing=True):
    """A json: name opening the qcow2 `path` with the key (every LUKS layer of its chain: qemu-img info
    says which), for qemu-img and qemu-io run by the tests themselves."""
    infos = json.loads(subprocess.run(['qemu-img', 'info', '-U', '--backing-chain', '--output=json', path],
                                      check=True, capture_output=True, text=True).stdout)
    node = None
    for info in reversed(infos):
        layer = {'driver': info['format'], 'file': {'driver': 'file', 'filename': info['filename']}}
        if info.get('encrypted'):
            layer['encrypt'] = {'format': 'luks', 'key-secret': key_secret}
        if node is not None:
            layer['backing'] = node
        node = layer
    if not backing:
        node['backing'] = None
    return 'json:' + json.dumps(node)


def secret_arg(key_file):
    return 'secret,id=k,file=%s' % key_file


def keyed_check(path, key_file):
    """`qemu-img check` of the chain under `path`, opened with the key: the JSON report."""
    out = subprocess.run(['qemu-img', 'check', '-U', '--output=json', '--object', secret_arg(key_file), spec(path)],
                         capture_output=True, text=True, check=False).stdout
    return json.loads(out)


def assert_clean(path, key_file):
    report = keyed_check(path, key_file)
    assert not report.get('corruptions') and not report.get('leaks') and not report.get('check-errors'), report


def decrypted(path, key_file, dest):
    """The LUKS qcow2 `path` read with the key, as a raw file `dest` (a temporary clear copy for greps)."""
    subprocess.run(['qemu-img', 'convert', '--object', secret_arg(key_file), '-O', 'raw',
                    'json:' + json.dumps({'driver': 'qcow2', 'encrypt': {'key-secret': 'k'},
                                          'file': {'driver': 'file', 'filename': path}}), dest], check=True)
    return dest


def leak_luks_clusters(path, key_file):
    """Leak clusters of the LUKS layer `path` the way a crash during a qcow2 snapshot delete does: an
    internal snapshot's clusters stay referenced, but the header no longer lists the snapshot."""
    subprocess.run(['qemu-img', 'snapshot', '--object', secret_arg(key_file), '-c', 'leak', spec(path, backing=False)],
                   check=True, capture_output=True)
    with open(path, 'r+b') as f:
        f.seek(60)              # nb_snapshots (u32) and snapshots_offset (u64) in the qcow2 header
        f.write(struct.pack('>IQ', 0, 0))


def flip_luks_data_byte(path, key_file):
    """Invert one byte inside a data cluster the LUKS layer `path` holds itself (ciphertext). qemu-img
    map gives no host offset for encrypted clusters, so the qcow2 L1/L2 tables are read for it."""
    out = subprocess.run(['qemu-img', 'map', '--output=json', '-U', '--object', secret_arg(key_file),
                          spec(path, backing=False)], check=True, capture_output=True, text=True).stdout
    guest_offset = [e for e in json.loads(out) if e['depth'] == 0 and e.get('data')][0]['start']
    mask = 0x00fffffffffffe00
    with open(path, 'r+b') as f:
        header = f.read(48)
        cluster = 1 << struct.unpack('>I', header[20:24])[0]
        l1_offset = struct.unpack('>Q', header[40:48])[0]
        entries = cluster // 8
        f.seek(l1_offset + 8 * (guest_offset // (cluster * entries)))
        l2_offset = struct.unpack('>Q', f.read(8))[0] & mask
        f.seek(l2_offset + 8 * ((guest_offset // cluster) % entries))
        at = (struct.unpack('>Q', f.read(8))[0] & mask) + 5
        assert at > 5
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xff]))
        os.fsync(f.fileno())


BOOT_TIMEOUT = 180      # QEMU unlocks every LUKS layer of a chain when it starts (about iter-time each)


def boot(guest):
    """Start the guest on its (encrypted) chain and wait for it, longer than for a clear one."""
    guest.dom.create()
    guest.wait_ready(timeout=BOOT_TIMEOUT)
