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
from lxml import etree

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._memory_codec import decode, describe
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._secrets import secret_uuid
from encrypted import ITER_TIME, KEY, contains, decrypted, flip_luks_data_byte, key_slot_iterations
from testbed import assert_markers, assert_ram_restored, guest_task, run_task, run_tasks, ticks_around, write_markers

MODULE = 'nova.snapshots.nova_snapshot'


def task(guest, **args):
    return guest_task(MODULE, guest, **args)


def succeeded(result):
    assert not result.get('failed'), result.get('msg')
    assert KEY.strip().decode() not in json.dumps(result)         # the key never reaches a result
    return result


def failed(result):
    assert result.get('failed') is True, result
    assert KEY.strip().decode() not in json.dumps(result)
    return result['msg']


def ok(guest, **args):
    return succeeded(task(guest, **args))


def fails(guest, **args):
    return failed(task(guest, **args))


def batch(guest, *steps):
    """Results of nova_snapshot tasks [(args, check mode)] on `guest`, run in one ansible-playbook run
    (one start-up for tasks that need nothing from the guest in between)."""
    return run_tasks(guest.dir, [(MODULE, dict(dict(domain=guest.name, storage_dir=guest.storage_dir), **args), check)
                                 for args, check in steps])


def names(guest):
    return sorted(s.getName() for s in guest.dom.listAllSnapshots())


def snapshot_files(record):
    """Every file the snapshot made: its directory in the store (overlays, memory file, metadata)."""
    return [p for p in glob.glob(os.path.join(os.path.dirname(record['config_snapshot']), '*')) if os.path.isfile(p)]


def top(guest, dev='vda'):
    root = etree.fromstring(guest.dom.XMLDesc(0).encode())
    for disk in root.findall('devices/disk'):
        if disk.find('target').get('dev') == dev:
            return disk.find('source').get('file'), disk.find('source/encryption') is not None


def domain_record(guest):
    """The domain's encryption record in its store (key verifier, LUKS cost)."""
    with open(os.path.join(guest.storage_dir, guest.name, 'encryption.json')) as f:
        return json.load(f)


def clear_ram_left(guest, before):
    """Files in /dev/shm scratch directories made since `before` that hold this guest's RAM (a save
    image names its domain near its start); other runs' scratch (a benchmark beside us) is not ours."""
    left = []
    for directory in set(glob.glob('/dev/shm/nova-mem-*')) - before:
        for path in glob.glob(os.path.join(directory, '*')):
            try:
                with open(path, 'rb') as f:
                    if guest.name.encode() in f.read(1 << 20):
                        left.append(path)
            except OSError:
                continue        # removed meanwhile
    return left


def test_encrypted_snapshots_round_trip(crypt_guest, keys, tmp_path):
    guest, (good, wrong, world) = crypt_guest, keys
    write_markers(guest, 1)
    guest.wait_tick(2)
    shm_before = set(glob.glob('/dev/shm/nova-mem-*'))

    # refused before anything changes: a key file others can read; encrypt without a key; internal
    # and check mode: planned, key checked, nothing written (no key verifier, no libvirt secret)
    world_readable, no_key, internal, cheap, not_encrypted, planned = batch(
        guest, (dict(name='s1', snapshot_type='memory', encrypt=True, key_file=world), False),
        (dict(name='s1', snapshot_type='memory', encrypt=True), False),
        (dict(name='s1', snapshot_type='internal', encrypt=True, key_file=good), False),
        (dict(name='s1', snapshot_type='memory', encrypt=True, key_file=good, luks_iter_time=5), False),
        (dict(name='s1', snapshot_type='memory', key_file=good, luks_iter_time=100), False),
        (dict(name='s1', snapshot_type='memory', encrypt=True, key_file=good), True))
    msg = failed(world_readable)
    assert world in msg and '0644' in msg and 'group or others' in msg
    assert 'key_file' in failed(no_key)
    assert 'internal snapshot' in failed(internal)
    assert 'luks_iter_time must be between 10 and 60000' in failed(cheap)
    assert 'needs encrypt: true' in failed(not_encrypted)
    assert names(guest) == []
    succeeded(planned)
    assert planned['changed'] is True and planned['diff']['after']['encrypted'] is True
    assert not os.path.exists(os.path.join(guest.storage_dir, guest.name, 'encryption.json'))
    assert secret_uuid(guest.dom.UUIDString()) not in [s.UUIDString() for s in guest.conn.listAllSecrets()]

    created, window = ticks_around(guest, lambda: ok(guest, name='s1', snapshot_type='memory', encrypt=True, key_file=good))
    record = created['snapshot']
    assert record['encrypted'] is True and guest.state == 'running'
    assert secret_uuid(guest.dom.UUIDString()) in [s.UUIDString() for s in guest.conn.listAllSecrets()]
    memory = record['memory_file']
    assert describe(memory) == (True, 'none')
    assert clear_ram_left(guest, shm_before) == []                     # the clear RAM went at once
    overlay, luks = top(guest)
    assert luks and os.path.dirname(overlay) == os.path.dirname(memory)
    info = json.loads(subprocess.run(['qemu-img', 'info', '-U', '--output=json', overlay], capture_output=True,
                                     check=True, text=True).stdout)
    assert info['format-specific']['data']['encrypt']['format'] == 'luks'
    assert domain_record(guest)['luks_iter_time'] == 1000          # QEMU's default is 2000

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
    s2 = ok(guest, name='s2', snapshot_type='disk_only', key_file=good, luks_iter_time=100)['snapshot']
    assert s2['encrypted'] is True and top(guest)[1]
    # its overlay's key slot costs about a tenth of s1's (QEMU calibrates the iterations per host,
    # so the ratio, not the count), and the domain keeps the new cost for its later layers
    assert key_slot_iterations(top(guest)[0]) * 4 < key_slot_iterations(overlay)
    assert domain_record(guest)['luks_iter_time'] == 100
    # the persistent definition describes the whole chain with each encrypted layer's secret and
    # engine='qemu' (without it libvirt 9.0 cannot start the VM from that definition again)
    disk = etree.fromstring(guest.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode()).find('devices/disk')
    layers = [disk.find('source')] + disk.findall('.//backingStore/source')
    assert [e.find('encryption') is not None for e in layers] == [True, True, False]
    assert set(e.find('encryption').get('engine') for e in layers[:2]) == {'qemu'}
    write_markers(guest, 3)

    # an export of s2 (its frozen disk is s1's LUKS overlay) needs the key; nothing written without it
    export = guest_task('nova.snapshots.nova_snapshot_export', guest, name='s2', dest=str(tmp_path / 'out'))
    assert export['failed'] is True and 'needs key_file' in export['msg'] and not (tmp_path / 'out').exists()

    # revert: without the key, or with the wrong one, nothing changes
    no_key, wrong_key = batch(guest, (dict(name='s1', state='reverted'), False),
                              (dict(name='s1', state='reverted', key_file=wrong), False))
    assert 'needs key_file' in failed(no_key) and 'wrong key' in failed(wrong_key)
    assert_markers(guest, 3)
    offset = len(guest.console())
    assert ok(guest, name='s1', state='reverted', key_file=good)['changed'] is True
    assert_ram_restored(guest, offset, window)
    assert_markers(guest, 1)
    assert top(guest)[1], 'the overlay a revert starts on an encrypted snapshot is encrypted'
    assert clear_ram_left(guest, shm_before) == []

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


VERIFY = 'nova.snapshots.nova_snapshot_verify'
EXPORT = 'nova.snapshots.nova_snapshot_export'
IMPORT = 'nova.snapshots.nova_snapshot_import'
POLICY = 'nova.snapshots.nova_policy'


def store_files(guest):
    root = os.path.join(guest.storage_dir, guest.name)
    return dict((p, os.stat(p).st_mtime_ns) for p in glob.glob(os.path.join(root, '**'), recursive=True)
                if os.path.isfile(p))


def cleanup_imported(conn, name):
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    uid = secret_uuid(dom.UUIDString())
    dom.undefine()
    try:
        conn.secretLookupByUUIDString(uid).undefine()
    except libvirt.libvirtError:
        pass


def test_verify_and_export_encrypted_chain(crypt_guest, keys, tmp_path):
    guest, (good, wrong) = crypt_guest, keys[:2]
    write_markers(guest, 1)
    ok(guest, name='v1', snapshot_type='disk_only', encrypt=True, key_file=good, luks_iter_time=ITER_TIME)
    write_markers(guest, 2)                        # into v1's LUKS overlay, frozen by v2
    # v2 is taken by a policy: encrypt (implied: the disk is encrypted), key_file and checksum pass through
    enforced = guest_task(POLICY, guest, name='nightly', snapshot_type='disk_only', schedule=dict(daily='03:00'),
                          state='enforced', now='2026-01-04T12:00:00Z', key_file=good, checksum='sha256')
    assert not enforced.get('failed'), enforced.get('msg')
    v2name = enforced['taken'][0]['name']
    with open(os.path.join(guest.storage_dir, guest.name, 'metadata.json')) as f:
        v2 = [x for x in json.load(f)['snapshots'] if x['name'] == v2name][0]
    assert v2['encrypted'] is True and top(guest)[1]
    layer = v2['disk_files'][0]['file_path']
    assert json.loads(subprocess.run(['qemu-img', 'info', '-U', '--output=json', layer], capture_output=True,
                                     check=True, text=True).stdout)['encrypted'] is True

    # without the key, or with the wrong one: refused, nothing read or written
    before = store_files(guest)
    mine = dict(domain=guest.name, storage_dir=guest.storage_dir)
    refusals = run_tasks(guest.dir, [(VERIFY, dict(mine), False), (VERIFY, dict(mine, key_file=wrong), False),
                                     (VERIFY, dict(mine, state='repaired'), False)])   # a repair reads and writes LUKS layers
    for result, words in zip(refusals, ('needs key_file', 'wrong key', 'needs key_file')):
        assert words in failed(result), result['msg']
    assert store_files(guest) == before

    first, again = run_tasks(guest.dir, [(VERIFY, dict(mine, key_file=good), False)] * 2)
    assert not first.get('failed'), first.get('msg')
    assert KEY.strip().decode() not in json.dumps(first)
    got = dict((s['name'], s) for s in first['snapshots'])
    assert got[v2name]['status'] == 'ok'                # its checksum was recorded at creation
    assert [(c['file'], c['verdict']) for c in got[v2name]['checksums']] == [(layer, 'match')]
    assert got['v1']['status'] == 'unverified'                                   # the clear base: first sight
    assert not [p for s in first['snapshots'] for p in s['problems']]
    assert again['changed'] is False and [s['status'] for s in again['snapshots']] == ['ok', 'ok']

    # export: the bundle's disk is LUKS with the same key; no marker in any of the bundle's files read raw,
    # while the disk read with the key shows them all
    bundle = str(tmp_path / 'bundle')
    result = guest_task(EXPORT, guest, name=v2name, dest=bundle)
    assert result['failed'] is True and 'needs key_file' in result['msg'], result['msg']
    assert not os.path.lexists(bundle) and not glob.glob(bundle + '.partial*')
    exported = guest_task(EXPORT, guest, name=v2name, dest=bundle, key_file=good)
    assert not exported.get('failed'), exported.get('msg')
    assert KEY.strip().decode() not in json.dumps(exported)
    disk = os.path.join(bundle, 'disk-vda.qcow2')
    with open(os.path.join(bundle, 'bundle.json')) as f:
        assert json.load(f)['disks'][0]['encrypted'] is True
    assert json.loads(subprocess.run(['qemu-img', 'info', '--output=json', disk], capture_output=True, check=True,
                                     text=True).stdout)['encrypted'] is True
    for path in glob.glob(os.path.join(bundle, '*')):
        for token in ('step1-vda', 'step2-vda', KEY.strip().decode()):
            assert not contains(path, token), '%s found in %s' % (token, path)
    clear = decrypted(disk, good, str(tmp_path / 'clear.raw'))
    assert contains(clear, 'step1-vda') and contains(clear, 'step2-vda')
    os.unlink(clear)
    assert guest_task(EXPORT, guest, name=v2name, dest=bundle, key_file=good)['changed'] is False
    # decrypt: true, and only then, writes it in clear (the check above can fail)
    plain = str(tmp_path / 'plain')
    assert not guest_task(EXPORT, guest, name=v2name, dest=plain, key_file=good, decrypt=True).get('failed')
    assert contains(os.path.join(plain, 'disk-vda.qcow2'), 'step2-vda')

    # import of the encrypted bundle: needs the key; the imported disk is LUKS with the same key and the
    # new domain opens it through its own secret; the markers are in it, read with the key, not read raw
    imported = 'crypt2-imp-%s' % os.urandom(3).hex()
    dest_dir = str(tmp_path / 'imported')
    try:
        refused = run_task(IMPORT, dict(src=[bundle], domain=imported, dest_dir=dest_dir))
        assert refused['failed'] is True and 'needs key_file' in refused['msg'] and not os.path.exists(dest_dir)
        refused = run_task(IMPORT, dict(src=[bundle], domain=imported, dest_dir=dest_dir, key_file=wrong))
        assert refused['failed'] is True and 'wrong key' in refused['msg'] and not os.path.exists(dest_dir)
        done = run_task(IMPORT, dict(src=[bundle], domain=imported, dest_dir=dest_dir, key_file=good,
                                     storage_dir=guest.storage_dir))
        assert not done.get('failed'), done.get('msg')
        assert KEY.strip().decode() not in json.dumps(done)
        path = done['disks'][0]['path']
        # the new domain's store holds the key's verifier (not the key): a later task with another key is
        # refused before anything changes
        verifier = os.path.join(guest.storage_dir, imported, 'encryption.json')
        assert done['key_verifier'] == verifier and not contains(verifier, KEY.strip().decode())
        with open(path, 'rb') as f:
            disk_before = f.read()
        refused = run_task(MODULE, dict(domain=imported, storage_dir=guest.storage_dir, name='later',
                                        snapshot_type='disk_only', key_file=wrong))
        assert refused['failed'] is True and 'wrong key' in refused['msg'], refused['msg']
        with open(path, 'rb') as f:
            assert f.read() == disk_before
        assert sorted(os.listdir(os.path.dirname(verifier))) == ['encryption.json']
        assert not contains(path, 'step1-vda') and not contains(path, 'step2-vda')
        assert contains(decrypted(path, good, str(tmp_path / 'imported.raw')), 'step2-vda')
        dom = guest.conn.lookupByName(imported)
        source = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode()).find('devices/disk/source')
        assert source.get('file') == path
        assert source.find('encryption/secret').get('uuid') == secret_uuid(dom.UUIDString())
        assert guest.conn.secretLookupByUUIDString(secret_uuid(dom.UUIDString())).UUIDString()
    finally:
        cleanup_imported(guest.conn, imported)

    # a flipped byte of ciphertext in the encrypted layer: found, named
    flip_luks_data_byte(layer, good)
    broken = guest_task(VERIFY, guest, key_file=good)
    assert broken['failed'] is True and "snapshot '%s'" % v2name in broken['msg'] and layer in broken['msg']
    kinds = [p['kind'] for p in dict((s['name'], s) for s in broken['snapshots'])[v2name]['problems']]
    assert kinds == ['checksum_mismatch']
