# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Recorded checksums follow the collection's own rewrites (commit, optimize, tier move)."""

from __future__ import annotations

import hashlib

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._checksum import ChecksumFile
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._store import Store
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import SnapshotDisk, VmSnapshot
from ansible_collections.nova.snapshots.plugins.module_utils.model._tree import Tree
from ansible_collections.nova.snapshots.plugins.module_utils.operations._checksums import refresh_checksums


class Manager:
    def __init__(self, store):
        self.store = store
        self.qemu_img = None


def test_a_moved_layer_is_recorded_again_under_its_new_path(tmp_path):
    store = Store(str(tmp_path / 'store'), 'web')
    old, new, other = tmp_path / 'layer.qcow2', tmp_path / 'tier-layer.qcow2', tmp_path / 'other.qcow2'
    old.write_bytes(b'frozen bytes')
    other.write_bytes(b'untouched')
    snap = VmSnapshot('id1', 'web', 's1', 'disk_only', 1, 'running', [SnapshotDisk('vda', str(old))])
    store.make_dir(store.snapshot_dir('id1'))
    record = ChecksumFile(store.snapshot_dir('id1'))
    record.save(dict(files={str(old): dict(path=str(old), algorithm='sha256', digest='x', size=12, backing=None),
                            str(other): dict(path=str(other), algorithm='sha256', digest='y', size=9, backing=None)}))
    new.write_bytes(b'frozen bytes, recompressed')
    old.unlink()
    assert refresh_checksums(Manager(store), Tree('web', [snap]), {str(old): str(new)}, 'a move') == 1
    files = record.load()['files']
    assert str(old) not in files and files[str(other)]['digest'] == 'y'
    assert files[str(new)]['digest'] == hashlib.sha256(b'frozen bytes, recompressed').hexdigest()
    assert files[str(new)]['result'] == 'recorded again after a move'
    # nothing recorded: nothing read, nothing written
    assert refresh_checksums(Manager(store), Tree('web', []), {str(new): str(new)}, 'x') == 0
