# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The block-level merge (operations/_merge.py) on LUKS chains, through KeyedQemuImg: the changes are
found, compared and copied with the key, the result is written encrypted, and no clear byte of it
reaches the result's file or the scratch directory, on real images made with qemu-img."""

from __future__ import annotations

import os
import shutil

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._keyed_images import SECRET_ID, KeyedQemuImg
from ansible_collections.nova.snapshots.plugins.module_utils.operations._merge import (
    MergeConflict, apply_merge, plan_carry, plan_merge)
from test_keyed_images import KEY, luks_overlay
from test_merge import C, MiB, QEMU, create, sh

pytestmark = pytest.mark.skipif(shutil.which('qemu-img') is None, reason='needs qemu-img')

MARK = b'nova-keyed-merge-marker-'


def qemu_io(keyed, path, command):
    """qemu-io on the LUKS chain of `path` (the whole chain keyed: a backing opened from a header gets no key)."""
    sh('qemu-io', '--object', 'secret,id=%s,file=%s' % (SECRET_ID, keyed.key_file), '-c', command,
       keyed.name(path, 'qcow2'))


def keyed_write(keyed, path, offset, tag):
    """Write MARK + tag, repeated over a cluster at `offset`, into the LUKS image `path` (with the key)."""
    data = ((MARK + tag.encode()) * (C // len(MARK)))[:C]
    blob = path + '.blob'
    with open(blob, 'wb') as f:
        f.write(data)
    qemu_io(keyed, path, 'write -s %s %d %d' % (blob, offset, len(data)))
    os.unlink(blob)
    return data


def keyed_read(keyed, path, offset, length, tmp_path):
    dest = str(tmp_path / 'read.raw')
    keyed.extract(path, 'qcow2', offset, length, dest)
    with open(dest, 'rb') as f:
        data = f.read()
    os.unlink(dest)
    return data


def raw_has_marker(path):
    with open(path, 'rb') as f:
        return MARK in f.read()


def layer(keyed, ancestor, path, backing):
    """A new, empty LUKS layer `path` on `backing`: a copy of the (never written) ancestor, rebased, so
    QEMU's PBKDF2 calibration is paid once per test."""
    shutil.copy(ancestor, path)
    keyed.rebase(path, backing, 'qcow2', unsafe=True)
    return path


@pytest.fixture
def chain(tmp_path):
    """ancestor (LUKS, on a clear base), and source, target, target's own top: LUKS overlays on it."""
    key = str(tmp_path / 'key')
    with open(key, 'wb') as f:
        f.write(KEY)
    os.chmod(key, 0o600)
    keyed = KeyedQemuImg(QEMU, key, remember_maps=True)        # as the merge uses it
    base = create(tmp_path / 'base.qcow2', size=16 * MiB)
    ancestor = str(tmp_path / 'ancestor.qcow2')
    luks_overlay(QEMU, key, ancestor, base, 'qcow2')
    paths = dict((name, layer(keyed, ancestor, str(tmp_path / ('%s.qcow2' % name)), ancestor))
                 for name in ('source', 'target'))
    return keyed, key, ancestor, paths


def test_a_merge_of_luks_layers_reads_and_writes_them_with_the_key(chain, tmp_path):
    keyed, key, ancestor, paths = chain
    theirs = keyed_write(keyed, paths['source'], 1 * MiB, 'source')
    ours = keyed_write(keyed, paths['target'], 2 * MiB, 'target')
    assert QEMU.info(paths['source']).backing_file == ancestor

    scratch = tmp_path / 'scratch'
    scratch.mkdir()
    plan = plan_merge(keyed, ancestor, paths['source'], paths['target'], tmpdir=str(scratch))
    assert plan.copy == [(1 * MiB, C)] and plan.conflicts == []
    assert os.listdir(str(scratch)) == []           # the clear windows compared are gone

    result = layer(keyed, ancestor, str(tmp_path / 'result.qcow2'), paths['target'])

    def own():
        return [(e.start, e.length) for e in keyed.map(result, backing=False) if e.data and e.depth == 0]
    assert own() == []
    assert apply_merge(keyed, paths['source'], result, plan.copy) == C
    assert own() == [(1 * MiB, C)]          # the remembered map was forgotten by the write
    assert keyed_read(keyed, result, 1 * MiB, C, tmp_path) == theirs
    assert keyed_read(keyed, result, 2 * MiB, C, tmp_path) == ours
    for path in (result, paths['source'], paths['target']):
        assert not raw_has_marker(path), 'clear bytes in %s' % path


def test_both_sides_changing_a_luks_cluster_is_a_conflict_and_a_carry_sees_it(chain, tmp_path):
    keyed, key, ancestor, paths = chain
    keyed_write(keyed, paths['source'], 3 * MiB, 'source')
    keyed_write(keyed, paths['target'], 3 * MiB, 'target')
    with pytest.raises(MergeConflict) as e:
        plan_merge(keyed, ancestor, paths['source'], paths['target'], tmpdir=str(tmp_path))
    assert e.value.conflicts == [(3 * MiB, C)]
    # the same, seen from the target's own top (a LUKS overlay on its tip): the carry's conflict
    top = layer(keyed, ancestor, str(tmp_path / 'top.qcow2'), paths['target'])
    qemu_io(keyed, top, 'write -z %d %d' % (5 * MiB, C))
    carry = plan_carry(keyed, ancestor, paths['source'], paths['target'], top, policy='source', tmpdir=str(tmp_path))
    assert carry.conflicts == [(3 * MiB, C)] and carry.write == []
