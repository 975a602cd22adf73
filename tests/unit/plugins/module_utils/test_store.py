# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import multiprocessing
import os
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
    with Store(root, 'web').lock():
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
    finally:
        release.set()
        holder.join()
    with Store(str(tmp_path), 'web', lock_timeout=1).lock():   # free again once the holder is gone
        with open(os.path.join(str(tmp_path), 'web', '.lock')) as f:
            assert f.read().strip() == str(os.getpid())


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
