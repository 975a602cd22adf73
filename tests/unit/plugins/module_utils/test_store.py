# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import stat
import time

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.model._records import SnapshotDisk, VmSnapshot
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._store import LockTimeout, Store, StoreCorrupt
from ansible_collections.nova.snapshots.plugins.module_utils.model._tree import Tree


def test_replace_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / 'f.json'
    Store.replace(str(path), 'one')
    Store.replace(str(path), b'two')
    assert path.read_text() == 'two'
    assert os.listdir(tmp_path) == ['f.json']
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_load_round_trip_and_private_dirs(tmp_path):
    store = Store(str(tmp_path), 'web')
    tree = Tree('web', [VmSnapshot('id1', 'web', 's1', 'disk_only', 1, 'running', [SnapshotDisk('vda', '/x')])],
                current='id1')
    store.make_dir(store.snapshot_dir('id1'))
    store.save(tree)
    assert store.load().to_dict() == tree.to_dict()
    assert json.loads((tmp_path / 'web' / 'snapshots' / 'id1' / 'metadata.json').read_text())['name'] == 's1'
    for d in (tmp_path / 'web', tmp_path / 'web' / 'snapshots', tmp_path / 'web' / 'snapshots' / 'id1'):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_a_save_rewrites_only_the_records_that_changed_or_cannot_be_read(tmp_path):
    store = Store(str(tmp_path), 'web')
    snaps = [VmSnapshot('id%d' % i, 'web', 's%d' % i, 'disk_only', i, 'running', [SnapshotDisk('vda', '/x%d' % i)],
                        tags=['a', 'b']) for i in range(3)]
    tree = Tree('web', snaps, current='id2')
    for snap in snaps:
        store.make_dir(store.snapshot_dir(snap.id))
    store.save(tree)
    paths = dict((s.id, os.path.join(store.snapshot_dir(s.id), 'metadata.json')) for s in snaps)
    inodes = dict((i, os.stat(p).st_ino) for i, p in paths.items())
    with open(paths['id2'], 'w') as f:
        f.write('{"half": ')                            # a record a crash cut short
    tree.snapshots['id1'].description = 'changed'
    store.save(tree)
    assert os.stat(paths['id0']).st_ino == inodes['id0']     # unchanged (tags a list in JSON, as saved): kept
    assert json.loads(open(paths['id1']).read())['description'] == 'changed'
    assert json.loads(open(paths['id2']).read())['name'] == 's2'
    assert store.load().to_dict() == tree.to_dict()


def test_missing_store_is_an_empty_tree_and_corrupt_one_a_clear_error(tmp_path):
    store = Store(str(tmp_path), 'web')
    assert store.load().snapshots == {}
    os.makedirs(store.root)
    with open(store.tree_path, 'w') as f:
        f.write('{"trunc')
    with pytest.raises(StoreCorrupt) as e:
        store.load()
    assert store.tree_path in e.value.msg and 'not changed' in e.value.msg


def _hold(root, ready, release):
    with Store(root, 'web').lock(operation='take disk_only snapshot s1 of web'):
        ready.set()
        release.wait(10)


def test_lock_waits_then_fails_with_a_clear_message(tmp_path):
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        start = time.time()
        with pytest.raises(LockTimeout) as e:
            with Store(str(tmp_path), 'web', lock_timeout=1).lock():
                raise AssertionError('took a lock another process holds')
        assert 0.9 <= time.time() - start < 5
        assert "another operation on domain 'web' holds its lock" in e.value.msg
        # it says who: the operation, the pid, the host and since when
        assert ': take disk_only snapshot s1 of web by pid %d on %s since ' % (holder.pid, socket.gethostname()) in e.value.msg
        assert e.value.details['holder']['pid'] == holder.pid
    finally:
        release.set()
        holder.join()
    with Store(str(tmp_path), 'web', lock_timeout=1).lock():   # free again once the holder is gone
        with open(os.path.join(str(tmp_path), 'web', '.lock')) as f:
            assert json.load(f)['pid'] == os.getpid()


def test_owns_only_files_inside_the_store(tmp_path):
    store = Store(str(tmp_path), 'web')
    d = store.make_dir(store.snapshot_dir('id1'))
    open(os.path.join(d, 'disk_vda.qcow2'), 'w').close()
    assert store.owns(os.path.join(d, 'disk_vda.qcow2')) and not store.owns('/var/lib/libvirt/images/base.qcow2')


def test_optimized_record_lives_in_the_store(tmp_path):
    store = Store(str(tmp_path), 'web')
    assert store.optimized() == {}
    store.save_optimized({'/x': {'stamp': [1, 2], 'settings': {'compression': 'zstd'}}})
    assert store.optimized()['/x']['settings'] == {'compression': 'zstd'}
    assert os.path.dirname(store.optimized_path) == store.root


def test_store_follows_its_domain_by_uuid(tmp_path):
    tree = Tree('web', [VmSnapshot('id1', 'web', 's1', 'disk_only', 1, 'running', [SnapshotDisk('vda', '/x')])])
    first = Store(str(tmp_path), 'web', uuid='11111111-aaaa')
    first.save(tree)
    # renamed (virsh domrename): the same UUID finds the same directory, and the records take the new name
    renamed = Store(str(tmp_path), 'web-renamed', uuid='11111111-aaaa')
    assert renamed.root == first.root
    assert renamed.load().vm_name == 'web-renamed' and renamed.load().by_name('s1').vm_name == 'web-renamed'
    # a new domain that reuses the old name does not get the old one's store
    other = Store(str(tmp_path), 'web', uuid='22222222-bbbb')
    assert other.root == first.root + '.22222222' and other.load().snapshots == {}
    other.save(Tree('web'))
    assert Store(str(tmp_path), 'web', uuid='22222222-bbbb').root == other.root
    assert Store(str(tmp_path), 'web', uuid='11111111-aaaa').root == first.root


def test_a_store_written_before_uuids_is_kept_and_claimed(tmp_path):
    old = Store(str(tmp_path), 'web')
    old.save(Tree('web'))
    claimed = Store(str(tmp_path), 'web', uuid='33333333-cccc')
    assert claimed.root == old.root
    claimed.save(claimed.load())
    assert Store(str(tmp_path), 'web', uuid='44444444-dddd').root == old.root + '.44444444'
