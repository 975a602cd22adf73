# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Encrypted and compressed snapshots on the real test guest (nova_snapshot encrypt/key_file,
memory_compression), proven on the bytes: the guest's markers are there for the guest and not in
any file of the snapshot read raw on the host; reverts restore markers and the RAM counter.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess

import libvirt
import pytest
from lxml import etree

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._memory_codec import decode, describe
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._secrets import secret_uuid
from testbed import assert_markers, assert_ram_restored, guest_task, ticks_around, write_markers

MODULE = 'nova.snapshots.nova_snapshot'
KEY = b'nova-test passphrase 7f3a9c\n'


def task(guest, **args):
    return guest_task(MODULE, guest, **args)


def ok(guest, **args):
    result = task(guest, **args)
    assert not result.get('failed'), result.get('msg')
    assert KEY.strip().decode() not in json.dumps(result)         # the key never reaches a result
    return result


def fails(guest, **args):
    result = task(guest, **args)
    assert result.get('failed') is True, result
    assert KEY.strip().decode() not in json.dumps(result)
    return result['msg']


def names(guest):
    return sorted(s.getName() for s in guest.dom.listAllSnapshots())


def contains(path, token):
    """grep on the raw bytes of a file on the host."""
    return subprocess.run(['grep', '-c', '-a', '-F', token, path], capture_output=True, check=False).returncode == 0


def snapshot_files(record):
    """Every file the snapshot made: its directory in the store (overlays, memory file, metadata)."""
    return [p for p in glob.glob(os.path.join(os.path.dirname(record['config_snapshot']), '*')) if os.path.isfile(p)]


def top(guest, dev='vda'):
    root = etree.fromstring(guest.dom.XMLDesc(0).encode())
    for disk in root.findall('devices/disk'):
        if disk.find('target').get('dev') == dev:
            return disk.find('source').get('file'), disk.find('source/encryption') is not None


@pytest.fixture
def keys(tmp_path):
    good, wrong, open_ = tmp_path / 'good.key', tmp_path / 'wrong.key', tmp_path / 'open.key'
    for path, data, mode in ((good, KEY, 0o400), (wrong, b'not the key\n', 0o600), (open_, KEY, 0o644)):
        path.write_bytes(data)
        os.chmod(path, mode)
    return str(good), str(wrong), str(open_)


@pytest.fixture
def crypt_guest(make_guest, conn):
    guest = make_guest(disks=1)
    yield guest
    try:
        conn.secretLookupByUUIDString(secret_uuid(guest.dom.UUIDString())).undefine()
    except libvirt.libvirtError:
        pass


def test_encrypted_snapshots_round_trip(crypt_guest, keys, tmp_path):
    guest, (good, wrong, world) = crypt_guest, keys
    write_markers(guest, 1)
    guest.wait_tick(2)
    shm_before = set(glob.glob('/dev/shm/nova-mem-*'))

    # refused before anything changes: a key file others can read; encrypt without a key; internal
    msg = fails(guest, name='s1', snapshot_type='memory', encrypt=True, key_file=world)
    assert world in msg and '0644' in msg and 'group or others' in msg
    assert 'key_file' in fails(guest, name='s1', snapshot_type='memory', encrypt=True)
    assert 'internal snapshot' in fails(guest, name='s1', snapshot_type='internal', encrypt=True, key_file=good)
    assert names(guest) == []

    # check mode: planned, key checked, nothing written (no key verifier, no libvirt secret)
    planned = ok(guest, check=True, name='s1', snapshot_type='memory', encrypt=True, key_file=good)
    assert planned['changed'] is True and planned['diff']['after']['encrypted'] is True
    assert not os.path.exists(os.path.join(guest.storage_dir, guest.name, 'encryption.json'))
    assert secret_uuid(guest.dom.UUIDString()) not in [s.UUIDString() for s in guest.conn.listAllSecrets()]

    created, window = ticks_around(guest, lambda: ok(guest, name='s1', snapshot_type='memory', encrypt=True, key_file=good))
    record = created['snapshot']
    assert record['encrypted'] is True and guest.state == 'running'
    assert secret_uuid(guest.dom.UUIDString()) in [s.UUIDString() for s in guest.conn.listAllSecrets()]
    memory = record['memory_file']
    assert describe(memory) == (True, 'none')
    assert set(glob.glob('/dev/shm/nova-mem-*')) == shm_before       # the clear RAM went at once
    overlay, luks = top(guest)
    assert luks and os.path.dirname(overlay) == os.path.dirname(memory)
    info = json.loads(subprocess.run(['qemu-img', 'info', '-U', '--output=json', overlay], capture_output=True,
                                     check=True, text=True).stdout)
    assert info['format-specific']['data']['encrypt']['format'] == 'luks'

    # the markers: step1 was in the guest's RAM (decrypting the memory file shows it), step2 is
    # written into the encrypted overlay; neither is in any file of the snapshot read raw
    write_markers(guest, 2)
    assert_markers(guest, 2)
    clear = str(tmp_path / 'clear.save')
    decode(memory, clear, key=KEY)
    assert contains(clear, 'step1-vda')
    os.unlink(clear)
    files = snapshot_files(record)
    assert overlay in files and memory in files
    for path in files:
        for token in ('step1-vda', 'step2-vda', KEY.strip().decode()):
            assert not contains(path, token), '%s found in %s' % (token, path)
    for path in glob.glob(os.path.join(guest.storage_dir, '**'), recursive=True) + glob.glob('/etc/libvirt/secrets/*'):
        if os.path.isfile(path):
            assert not contains(path, KEY.strip().decode()), 'the key is in %s' % path

    # a later snapshot on the encrypted disk is encrypted too (without encrypt: true), with the domain's key
    assert 'wrong key' in fails(guest, name='s2', snapshot_type='disk_only', key_file=wrong)
    s2 = ok(guest, name='s2', snapshot_type='disk_only', key_file=good)['snapshot']
    assert s2['encrypted'] is True and top(guest)[1]
    # the persistent definition describes the whole chain with each encrypted layer's secret and
    # engine='qemu' (without it libvirt 9.0 cannot start the VM from that definition again)
    disk = etree.fromstring(guest.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode()).find('devices/disk')
    layers = [disk.find('source')] + disk.findall('.//backingStore/source')
    assert [e.find('encryption') is not None for e in layers] == [True, True, False]
    assert set(e.find('encryption').get('engine') for e in layers[:2]) == {'qemu'}
    write_markers(guest, 3)

    # operations that do not handle encrypted chains yet refuse them before doing anything
    export = guest_task('nova.snapshots.nova_snapshot_export', guest, name='s1', dest=str(tmp_path / 'out'))
    assert export['failed'] is True and 'encrypted' in export['msg'] and not (tmp_path / 'out').exists()

    # revert: without the key, or with the wrong one, nothing changes
    assert 'needs key_file' in fails(guest, name='s1', state='reverted')
    assert 'wrong key' in fails(guest, name='s1', state='reverted', key_file=wrong)
    assert_markers(guest, 3)
    offset = len(guest.console())
    assert ok(guest, name='s1', state='reverted', key_file=good)['changed'] is True
    assert_ram_restored(guest, offset, window)
    assert_markers(guest, 1)
    assert top(guest)[1], 'the overlay a revert starts on an encrypted snapshot is encrypted'
    assert set(glob.glob('/dev/shm/nova-mem-*')) == shm_before

    # external with RAM on the reverted (encrypted) disk, then delete it (block pull into the
    # encrypted active overlay): markers kept, nothing in clear
    write_markers(guest, 2)
    s3 = ok(guest, name='s3', snapshot_type='external', key_file=good)['snapshot']
    assert s3['encrypted'] is True and describe(s3['memory_file'])[0] is True
    write_markers(guest, 3)
    assert 'needs key_file' in fails(guest, name='s3', state='absent')
    ok(guest, name='s3', state='absent', key_file=good)
    assert names(guest) == ['s1', 's2']
    assert_markers(guest, 3)
    overlay, luks = top(guest)
    assert luks and not contains(overlay, 'step3-vda') and not contains(overlay, 'step2-vda')


def test_compressed_memory_snapshot_reverts(make_guest):
    guest = make_guest(disks=1)
    write_markers(guest, 1)
    guest.wait_tick(2)
    created, window = ticks_around(guest, lambda: ok(guest, name='z', snapshot_type='memory', memory_compression='zstd'))
    record = created['snapshot']
    assert record['memory_compression'] == 'zstd' and record['encrypted'] is False
    assert describe(record['memory_file']) == (False, 'zstd')
    write_markers(guest, 2)
    offset = len(guest.console())
    ok(guest, name='z', state='reverted')
    assert_ram_restored(guest, offset, window)
    assert_markers(guest, 1)
    assert [p for p in os.listdir(os.path.join(guest.storage_dir, guest.name)) if p.startswith('.nova-mem-')] == []
