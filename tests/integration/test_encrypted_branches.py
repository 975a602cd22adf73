# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Branch switches and merges on encrypted chains (nova_snapshot_tree with key_file), on the real test
guest: markers read in the guest, the RAM counter resuming where each branch was left, and none of
the markers in any file of the store read raw on the host. Without the key, or with the wrong one,
the store is byte for byte as it was and so is the domain's definition."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess
import time

import libvirt

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._memory_codec import describe
from ansible_collections.nova.snapshots.plugins.module_utils.model import _crash as crash
from encrypted import ITER_TIME, KEY, contains
from test_encryption import clear_ram_left, top
from testbed import assert_markers, assert_ram_restored, guest_task, ticks_around, write_markers

TREE = 'nova.snapshots.nova_snapshot_tree'
SNAP = 'nova.snapshots.nova_snapshot'


def ok(module, guest, **args):
    result = guest_task(module, guest, **args)
    assert not result.get('failed'), result.get('msg')
    assert KEY.strip().decode() not in json.dumps(result)
    return result


def refused(module, guest, words, **args):
    """The task fails with `words` in its message, and the store and the definition are untouched."""
    before, xml = store_bytes(guest), inactive_xml(guest)
    result = guest_task(module, guest, **args)
    assert result.get('failed') is True and words in result['msg'], result
    assert KEY.strip().decode() not in json.dumps(result)
    assert store_bytes(guest) == before and inactive_xml(guest) == xml
    return result['msg']


def store_bytes(guest, root=None):
    """sha256 of every file of the domain's store (the audit trail beside it records refusals too)."""
    out = {}
    for path in glob.glob(os.path.join(root or os.path.join(guest.storage_dir, guest.name), '**'), recursive=True):
        if os.path.isfile(path) and not path.endswith('.lock'):
            with open(path, 'rb') as f:
                out[path] = hashlib.sha256(f.read()).hexdigest()
    return out


def inactive_xml(guest):
    return guest.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def none_in_store(guest, tokens):
    for path in store_bytes(guest, guest.storage_dir):       # the audit trail included
        for token in tokens:
            assert not contains(path, token), '%s found in %s' % (token, path)


def luks(path):
    return json.loads(subprocess.run(['qemu-img', 'info', '-U', '--output=json', path], capture_output=True,
                                     check=True, text=True).stdout).get('encrypted') is True


def leaving(guest, action):
    """Run action(), a switch away from the running branch; (its result, (lo, hi)): the window of the
    counter the branch left had when its RAM was saved (ticks_around cannot tell: the guest runs on
    after the switch, on another branch's counter)."""
    lo, start = guest.tick(), time.time()
    result = action()
    return result, (lo, lo + int(time.time() - start) + 1)


SIDE = 10 * 4096        # the side branch's own marker, where write_markers' steps never go


def test_switch_between_encrypted_branches_keeps_disks_and_ram(crypt_guest, keys):
    guest, (good, wrong) = crypt_guest, keys[:2]
    write_markers(guest, 1)
    guest.wait_tick(2)
    shm_before = set(glob.glob('/dev/shm/nova-mem-*'))
    # an encrypted snapshot with RAM, its memory file compressed too: main runs on LUKS from here
    e1, at_e1 = ticks_around(guest, lambda: ok(SNAP, guest, name='e1', snapshot_type='memory', encrypt=True,
                                               key_file=good, memory_compression='zstd', luks_iter_time=ITER_TIME))
    assert describe(e1['snapshot']['memory_file']) == (True, 'zstd')
    write_markers(guest, 2)

    # without the key or with the wrong one: refused while planning, nothing changed
    args = dict(state='branched', name='side', switch=True, **{'from': 'e1'})
    refused(TREE, guest, 'needs key_file', **args)
    refused(TREE, guest, 'wrong key', key_file=wrong, **args)
    assert guest.state == 'running'
    assert_markers(guest, 2)

    # to side, the task killed after libvirt saved main's RAM into tmpfs and before it was sealed:
    # the VM is stopped and its RAM is only there, in clear, in memory. The re-run seals it and goes
    # on: side starts on a LUKS overlay from e1's RAM (decrypted, unzipped)
    offset = len(guest.console())
    killed, at_main = leaving(guest, lambda: guest_task(TREE, guest, key_file=good, environment={crash.ENV: crash.SWITCH_RAM_SAVED},
                                                        **args))
    assert killed.get('failed') or killed.get('unreachable'), killed
    assert guest.state == 'shutoff' and any('/nova-mem-save-' in p for p in clear_ram_left(guest, shm_before))
    ok(TREE, guest, key_file=good, **args)
    assert_ram_restored(guest, offset, at_e1)
    # nothing clear is left in tmpfs: main's RAM sealed, and e1's decrypted RAM the killed run had
    # opened for side's start removed by the re-run (its owner was gone)
    assert clear_ram_left(guest, shm_before) == []
    assert_markers(guest, 1)
    assert top(guest)[1] and luks(top(guest)[0])
    main_ram = os.path.join(guest.storage_dir, guest.name, 'branches', 'main', 'memory.save')
    assert describe(main_ram)[0] is True
    guest.write_marker('vda', SIDE, 'side-vda')
    assert clear_ram_left(guest, shm_before) == []

    # back to main: side runs on LUKS, so its RAM needs the key too
    refused(TREE, guest, 'needs key_file', state='switched', name='main')
    offset = len(guest.console())
    at_side = leaving(guest, lambda: ok(TREE, guest, state='switched', name='main', key_file=good))[1]
    assert_ram_restored(guest, offset, at_main)
    assert_markers(guest, 2)
    assert guest.read_marker('vda', SIDE, 12) == ''
    assert not os.path.exists(main_ram)

    # and side again, resumed from its own sealed RAM
    offset = len(guest.console())
    ok(TREE, guest, state='switched', name='side', key_file=good)
    assert_ram_restored(guest, offset, at_side)
    assert_markers(guest, 1)
    assert guest.read_marker('vda', SIDE, 12) == 'side-vda'
    assert ok(TREE, guest, state='switched', name='side', key_file=good)['changed'] is False
    assert clear_ram_left(guest, shm_before) == []
    # the markers are in the guest, and in no file of the store read raw (overlays, memory files, branch RAM)
    assert describe(main_ram)[0] is True
    none_in_store(guest, ('step1-vda', 'step2-vda', 'side-vda', KEY.strip().decode()))


BASE, M1, MU, F1, FU = (k << 20 for k in (1, 2, 3, 4, 5))
WORDS = dict(((BASE, 'base'), (M1, 'main-1'), (MU, 'main-uncommitted'), (F1, 'feat-1'), (FU, 'feat-uncommitted')))


def shown(guest):
    if guest.state != 'running':
        guest.start()
    return sorted(word for off, word in WORDS.items() if guest.read_marker('vda', off) == word)


def test_merge_of_an_encrypted_branch_is_seen_by_the_booted_target(crypt_guest, keys):
    guest, (good, wrong) = crypt_guest, keys[:2]
    guest.write_marker('vda', BASE, 'base')
    ok(SNAP, guest, name='clear', snapshot_type='disk_only')                 # before any encryption
    ok(SNAP, guest, name='root', snapshot_type='disk_only', encrypt=True, key_file=good, luks_iter_time=ITER_TIME)
    ok(TREE, guest, state='branched', name='feature', **{'from': 'root'})
    guest.write_marker('vda', M1, 'main-1')
    ok(SNAP, guest, name='m1', snapshot_type='disk_only', key_file=good)
    guest.write_marker('vda', MU, 'main-uncommitted')           # main's own writes after its tip
    ok(TREE, guest, state='switched', name='feature', key_file=good)
    assert shown(guest) == ['base']
    guest.write_marker('vda', F1, 'feat-1')
    ok(SNAP, guest, name='f1', snapshot_type='disk_only', key_file=good)
    guest.write_marker('vda', FU, 'feat-uncommitted')           # not in the source's tip: not merged
    ok(TREE, guest, state='switched', name='main', key_file=good)
    guest.stop()

    args = dict(state='merged', source='feature', target='main')
    refused(TREE, guest, 'needs key_file', **args)
    refused(TREE, guest, 'wrong key', key_file=wrong, **args)
    merged = ok(TREE, guest, key_file=good, **args)
    assert merged['changed'] is True and merged['conflicts'] == []
    assert ok(TREE, guest, key_file=good, **args)['changed'] is False
    with open(os.path.join(guest.storage_dir, guest.name, 'metadata.json')) as f:
        result = [s for s in json.load(f)['snapshots'] if s['name'] == 'merge-feature-into-main'][0]
    assert result['encrypted'] is True and luks(result['disk_files'][0]['file_path'])

    # the booted target shows both sides and its own uncommitted writes; the store holds none in clear
    assert shown(guest) == sorted(['base', 'main-1', 'main-uncommitted', 'feat-1'])
    assert top(guest)[1]
    guest.stop()
    none_in_store(guest, ('main-1', 'main-uncommitted', 'feat-1', 'feat-uncommitted', KEY.strip().decode()))

    # a branch of the clear snapshot needs no key: a clear overlay, its definition without <encryption>
    ok(TREE, guest, state='switched', name='clear')
    assert shown(guest) == ['base'] and top(guest)[1] is False


def test_switch_to_a_compressed_memory_snapshot_needs_no_key(make_guest):
    """zstd without encryption: restored like a revert does (decompressed beside the store, removed)."""
    guest = make_guest(disks=1)
    write_markers(guest, 1)
    guest.wait_tick(2)
    at_z = ticks_around(guest, lambda: ok(SNAP, guest, name='z', snapshot_type='memory', memory_compression='zstd'))[1]
    write_markers(guest, 2)
    offset = len(guest.console())
    at_main = leaving(guest, lambda: ok(TREE, guest, state='branched', name='zb', switch=True, **{'from': 'z'}))[1]
    assert_ram_restored(guest, offset, at_z)
    assert_markers(guest, 1)
    root = os.path.join(guest.storage_dir, guest.name)
    assert [p for p in os.listdir(root) if p.startswith('.nova-mem-')] == []
    offset = len(guest.console())
    ok(TREE, guest, state='switched', name='main')
    assert_ram_restored(guest, offset, at_main)
    assert_markers(guest, 2)
