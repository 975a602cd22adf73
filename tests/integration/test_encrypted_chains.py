# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Chain operations on encrypted chains (LUKS overlays of `encrypt: true` snapshots) on the real test
guest: consolidation live and offline, optimization, tier moves, offline delete, repair, and the
domain's libvirt secret going once nothing needs it.

Each proves what the issue asks: the guest's markers read in the guest after the operation (booted
from the definition the operation left), `qemu-img check` of the chain clean (opened with the key),
the markers absent from every file of the store read raw, and refusals (no key, wrong key) leaving
every file of the store and the guest's images byte for byte as they were. Steps that need no guest
in between share one ansible-playbook run (run_tasks).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._secrets import secret_uuid
from encrypted import (BOOT_TIMEOUT, ITER_TIME, TOKEN, assert_clean, assert_not_in_clear, boot, flip_luks_data_byte, key_slot_iterations,
                       leak_luks_clusters, secret_arg, spec, store_bytes)
from testbed import assert_markers, file_sha256, guest_task, run_tasks, write_markers

SNAP = 'nova.snapshots.nova_snapshot'
CHAIN = 'nova.snapshots.nova_chain'
VERIFY = 'nova.snapshots.nova_snapshot_verify'


def ok(result):
    assert not result.get('failed'), result.get('msg')
    assert TOKEN not in json.dumps(result)          # the key never reaches a result
    return result


def refused(result, words):
    assert result.get('failed') is True and words in result['msg'], result.get('msg')
    assert TOKEN not in json.dumps(result)
    return result


def steps(guest, *tasks):
    """[(module, args, check)] on `guest` (its domain and store filled in), in one ansible-playbook run."""
    return run_tasks(guest.dir, [(module, dict(dict(domain=guest.name, storage_dir=guest.storage_dir), **args), check)
                                 for module, args, check in tasks])


def snapshot(guest, name, key_file, **args):
    return ok(guest_task(SNAP, guest, name=name, snapshot_type='disk_only', key_file=key_file, **args))['snapshot']


def frozen(guest, name):
    """The image snapshot `name` froze (of its disk vda), from the store's tree."""
    with open(os.path.join(guest.storage_dir, guest.name, 'metadata.json')) as f:
        return [r for r in json.load(f)['snapshots'] if r['name'] == name][0]['disk_files'][0]['file_path']


def top(guest, key_file):
    return ok(guest_task(CHAIN, guest, key_file=key_file))['disks']['vda']['chain'][0]['file']


def chain_of(path):
    out = subprocess.run(['qemu-img', 'info', '-U', '--backing-chain', '--output=json', path], check=True,
                         capture_output=True, text=True).stdout
    return [(i['filename'], bool(i.get('encrypted'))) for i in json.loads(out)]


def encrypted_chain(guest, good, markers):
    """s1 (encrypt) on the clear base, then s2, s3: the VM runs on LUKS overlays O3 -> O2 -> O1 -> base."""
    write_markers(guest, 1)
    for step in range(1, markers):
        snapshot(guest, 's%d' % step, good, encrypt=True, luks_iter_time=ITER_TIME)
        write_markers(guest, step + 1)


def test_consolidation_of_an_encrypted_chain_live_and_offline(crypt_guest, keys):
    guest, (good, wrong) = crypt_guest, keys[:2]
    encrypted_chain(guest, good, 4)
    refused(guest_task(CHAIN, guest), 'needs key_file')         # map and check of LUKS layers need it
    vm_top = top(guest, good)
    assert [e for _f, e in chain_of(vm_top)] == [True, True, True, False]

    # refused without the key and with the wrong one, every byte as it was; check mode changes nothing
    before = store_bytes(guest)
    no_key, wrong_key, planned = steps(guest, (CHAIN, dict(state='consolidated', max_chain_length=3), False),
                                       (CHAIN, dict(state='consolidated', max_chain_length=3, key_file=wrong), False),
                                       (CHAIN, dict(state='consolidated', max_chain_length=3, key_file=good), True))
    refused(no_key, 'needs key_file')
    refused(wrong_key, 'wrong key')
    assert ok(planned)['changed'] is True and store_bytes(guest) == before

    # live: QEMU pulls s3's frozen LUKS layer into the VM's (LUKS) image with a block job
    live, again = steps(guest, (CHAIN, dict(state='consolidated', max_chain_length=3, key_file=good), False),
                        (CHAIN, dict(state='consolidated', max_chain_length=3, key_file=good), False))
    assert ok(live)['changed'] is True and [m['method'] for m in live['merged']] == ['pull']
    assert live['disks']['vda']['length'] == 3 and ok(again)['changed'] is False
    assert guest.state == 'running'
    assert_markers(guest, 4, last=5)

    # offline: qemu-img rebase, the layers opened with the key; then the VM boots from what it left
    guest.stop()
    offline = ok(guest_task(CHAIN, guest, state='consolidated', max_chain_length=2, key_file=good))
    assert offline['changed'] is True and offline['disks']['vda']['length'] == 2
    assert chain_of(vm_top) == [(vm_top, True), (guest.disks['vda'], False)]
    assert_clean(vm_top, good)
    assert_not_in_clear(guest, ['step2-vda', 'step3-vda', 'step4-vda'])
    boot(guest)
    assert_markers(guest, 4, last=5)

    # the restore points the pulls kept: s2 still shows its own state
    ok(guest_task(SNAP, guest, name='s2', state='reverted', after='running', key_file=good))
    guest.wait_ready(timeout=BOOT_TIMEOUT)
    assert_markers(guest, 2, last=5)


def test_optimize_and_move_encrypted_layers(crypt_guest, keys):
    guest, good = crypt_guest, keys[0]
    encrypted_chain(guest, good, 4)                 # markers 1 (base) .. 4 (the VM's image)
    o1 = frozen(guest, 's2')
    guest.stop()
    # zeros the guest wrote into s1's overlay (e.g. a zeroed free space): what sparsifying drops
    subprocess.run(['qemu-io', '--object', secret_arg(good), '-c', 'write -P 0 8M 4M', spec(o1, backing=False)],
                   check=True, capture_output=True)
    fast = os.path.join(guest.dir, 'ssd')
    os.makedirs(fast)

    before = store_bytes(guest)
    no_key, zstd = steps(guest, (CHAIN, dict(state='optimized'), False),
                         (CHAIN, dict(state='optimized', compression='zstd', key_file=good), True))
    refused(no_key, 'needs key_file')
    assert [s['reason'] for s in ok(zstd)['skipped'] if s['file'] == o1][0].startswith('encrypted')
    assert store_bytes(guest) == before
    done, again = steps(guest, (CHAIN, dict(state='optimized', key_file=good), False),
                        (CHAIN, dict(state='optimized', key_file=good), False))
    assert ok(done)['changed'] is True and o1 in [o['file'] for o in done['optimized']]
    assert done['space_saved'] >= 3 * 2 ** 20 and ok(again)['changed'] is False
    assert chain_of(o1)[0] == (o1, True)            # rewritten LUKS again, with the same key
    assert_clean(o1, good)
    # at the domain's LUKS cost (luks_iter_time of its snapshots), not at the default ten times it
    assert key_slot_iterations(o1) < 4 * key_slot_iterations(frozen(guest, 's3'))

    # tiers: the VM's frozen layers (LUKS files: byte copies) move; the images above are rebased with the key
    before = store_bytes(guest)
    refused(guest_task(CHAIN, guest, state='consolidated', active_storage=fast), 'needs key_file')
    assert store_bytes(guest) == before
    moved = ok(guest_task(CHAIN, guest, state='consolidated', active_storage=fast, key_file=good))
    assert len(moved['moved']) == 2 and all(m['to'].startswith(fast) for m in moved['moved'])
    vm_top = top(guest, good)
    assert [e for _f, e in chain_of(vm_top)] == [True, True, True, False]
    assert [f.startswith(fast) for f, _e in chain_of(vm_top)] == [False, True, True, False]
    assert_clean(vm_top, good)
    assert_not_in_clear(guest, ['step2-vda', 'step3-vda', 'step4-vda'], also=[f for f, _e in chain_of(vm_top)[1:3]])
    boot(guest)
    assert_markers(guest, 4, last=5)                # booted from the definition the move left


def test_offline_delete_then_the_secret_goes(crypt_guest, keys, conn):
    guest, (good, wrong) = crypt_guest, keys[:2]
    write_markers(guest, 1)
    snapshot(guest, 'c0', None)                     # a clear snapshot, for the end
    encrypted_chain(guest, good, 4)                 # markers 1 (c0's overlay) .. 4 (the VM's image)
    o1, vm_top = frozen(guest, 's2'), top(guest, good)

    # offline delete of s3: the VM's LUKS image is rebased (safely, with the key) onto s2's LUKS layer
    guest.stop()
    before = store_bytes(guest)
    no_key, wrong_key = steps(guest, (SNAP, dict(name='s3', state='absent'), False),
                              (SNAP, dict(name='s3', state='absent', key_file=wrong), False))
    refused(no_key, 'needs key_file')
    refused(wrong_key, 'wrong key')
    assert store_bytes(guest) == before
    ok(guest_task(SNAP, guest, name='s3', state='absent', key_file=good))
    assert [e for _f, e in chain_of(vm_top)] == [True, True, False, False]
    info = json.loads(subprocess.run(['qemu-img', 'info', '-U', '--output=json', vm_top], check=True,
                                     capture_output=True, text=True).stdout)
    assert info['backing-filename'] == o1               # a plain path, not the json: name the rebase used
    assert_clean(vm_top, good)
    assert_not_in_clear(guest, ['step2-vda', 'step3-vda', 'step4-vda'])
    boot(guest)
    assert_markers(guest, 4, last=5)

    # back on the clear c0, and every encrypted snapshot deleted: the secret and the key verifier go
    uid = secret_uuid(guest.dom.UUIDString())
    assert uid in [s.UUIDString() for s in conn.listAllSecrets()]
    reverted, d1, d2 = steps(guest, (SNAP, dict(name='c0', state='reverted', after='running'), False),
                             (SNAP, dict(name='s2', state='absent', key_file=good), False),
                             (SNAP, dict(name='s1', state='absent', key_file=good), False))
    for result in (reverted, d1, d2):
        ok(result)
    assert uid not in [s.UUIDString() for s in conn.listAllSecrets()]
    assert not os.path.exists(os.path.join(guest.storage_dir, guest.name, 'encryption.json'))
    guest.wait_ready(timeout=BOOT_TIMEOUT)
    assert_markers(guest, 1, last=5)


def test_repair_of_an_encrypted_layer(crypt_guest, keys, tmp_path):
    guest, (good, wrong) = crypt_guest, keys[:2]
    encrypted_chain(guest, good, 3)
    o1 = frozen(guest, 's2')
    guest.stop()
    leak_luks_clusters(o1, good)

    before = store_bytes(guest)
    no_key, wrong_key, planned = steps(
        guest, (VERIFY, dict(state='repaired'), False), (VERIFY, dict(state='repaired', key_file=wrong), False),
        (VERIFY, dict(state='repaired', key_file=good), True))
    refused(no_key, 'needs key_file')
    refused(wrong_key, 'wrong key')
    assert planned['changed'] is True and 'leaked clusters' in planned['msg']       # found, nothing done
    assert TOKEN not in json.dumps(planned) and store_bytes(guest) == before
    fixed, again = steps(guest, (VERIFY, dict(state='repaired', key_file=good), False),
                         (VERIFY, dict(state='repaired', key_file=good), False))
    assert ok(fixed)['changed'] is True
    s2 = [s for s in fixed['snapshots'] if s['name'] == 's2'][0]
    assert s2['status'] == 'ok' and any('leaked clusters' in r for r in s2['repairs']), s2
    assert ok(again)['changed'] is False
    assert before != store_bytes(guest)
    assert chain_of(o1)[0] == (o1, True)
    assert_clean(o1, good)

    # a damaged byte of ciphertext: restored from an identical copy (its bytes: no key needed to copy)
    backup = str(tmp_path / 'backup')
    os.makedirs(backup)
    shutil.copy(o1, backup)
    flip_luks_data_byte(o1, good)
    restored = ok(guest_task(VERIFY, guest, state='repaired', key_file=good, search_paths=[backup]))
    assert any('identical copy' in r for s in restored['snapshots'] for r in s['repairs'])
    assert store_bytes(guest)[o1] == file_sha256(os.path.join(backup, os.path.basename(o1)))
    assert_not_in_clear(guest, ['step2-vda', 'step3-vda'])
    boot(guest)
    assert_markers(guest, 3, last=4)
