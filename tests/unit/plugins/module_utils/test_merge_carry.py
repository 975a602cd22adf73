# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Carrying a branch's own writes (its top image on its tip) over onto a merge result, on real
images: the top's clusters shadow whatever is below them, so a source block in a cluster the top
allocated must be a conflict (or be written into the top), never silently lost (issue 10)."""

from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import QemuImg
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused
from ansible_collections.nova.snapshots.plugins.module_utils.operations._merge import (
    MergeConflict, apply_merge, plan_carry, plan_merge)

C = 65536
SIZE = 16 * C


def run_command(cmd, environ_update=None):
    env = dict(os.environ, **(environ_update or {}))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


QEMU = QemuImg(run_command)


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def create(path, size=None, backing=None):
    path = str(path)
    if backing is None:
        sh('qemu-img', 'create', '-q', '-f', 'qcow2', path, str(size))
    else:
        sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', str(backing), path)
    return path


def write(path, *writes):
    cmds = []
    for off, length, pattern in writes:
        cmds += ['-c', 'write -P 0x%02x %d %d' % (pattern, off, length)]
    sh('qemu-io', '-f', 'qcow2', *cmds, str(path))


def disk_bytes(path, tmpdir):
    out = os.path.join(str(tmpdir), 'readback.raw')
    sh('qemu-img', 'convert', '-U', '-f', 'qcow2', '-O', 'raw', str(path), out)
    with open(out, 'rb') as f:
        data = f.read()
    os.unlink(out)
    return data


def clusters(*numbers):
    return [(n * C, C) for n in numbers]


@pytest.fixture
def images(tmp_path):
    img = dict(scratch=str(tmp_path))
    img['ancestor'] = create(tmp_path / 'ancestor.qcow2', size=SIZE)
    write(img['ancestor'], (0, SIZE, 0x11))
    img['source'] = create(tmp_path / 'source.qcow2', backing=img['ancestor'])
    write(img['source'], (2 * C, 100, 0x41), (8 * C, C, 0x42))          # the source's blocks
    img['tip'] = create(tmp_path / 'tip.qcow2', backing=img['ancestor'])
    write(img['tip'], (4 * C, C, 0x51))                                    # the target's snapshot
    return img


def merge_and_carry(img, tmp_path, top, policy):
    """What _three_way does: the result on the tip, the top rebased onto it, then the planned writes."""
    plan = plan_merge(QEMU, img['ancestor'], img['source'], img['tip'], policy)
    carry = plan_carry(QEMU, img['ancestor'], img['source'], img['tip'], top, policy)
    result = create(tmp_path / 'result.qcow2', backing=img['tip'])
    apply_merge(QEMU, img['source'], result, plan.copy)
    QEMU.rebase(top, result, 'qcow2', unsafe=True)
    apply_merge(QEMU, img['source'], top, carry.write)
    return carry, disk_bytes(result, tmp_path), disk_bytes(top, tmp_path)


def test_writes_in_clusters_of_their_own_see_every_source_block(images, tmp_path):
    top = create(tmp_path / 'top.qcow2', backing=images['tip'])
    write(top, (6 * C + 10, 12, 0x61))                                     # the target's uncommitted write
    carry, result, seen = merge_and_carry(images, tmp_path, top, 'fail')
    assert (carry.write, carry.conflicts) == ([], [])
    assert seen[2 * C:2 * C + 100] == b'\x41' * 100 and seen[8 * C:9 * C] == b'\x42' * C      # the source's
    assert seen[4 * C:5 * C] == b'\x51' * C and seen[6 * C + 10:6 * C + 22] == b'\x61' * 12   # the target's
    assert result[6 * C:7 * C] == b'\x11' * C                                                 # not in the snapshot


def test_a_write_sharing_a_cluster_with_a_source_block_is_a_conflict_not_a_silent_loss(images, tmp_path):
    # before the fix: the top's cluster 2 (a 12-byte write at 2C+4096, the rest copied from the tip)
    # shadowed the source's bytes at 2C after the rebase, and the merge reported no conflict
    top = create(tmp_path / 'top.qcow2', backing=images['tip'])
    write(top, (2 * C + 4096, 12, 0x61))
    with pytest.raises(MergeConflict) as e:
        plan_carry(QEMU, images['ancestor'], images['source'], images['tip'], top, 'fail', device='vda')
    assert e.value.conflicts == clusters(2)
    assert e.value.msg == 'vda: bytes %d-%d changed on both sides' % (2 * C, 3 * C - 1)

    carry, _result, seen = merge_and_carry(images, tmp_path, top, 'target')
    assert (carry.write, carry.conflicts) == ([], clusters(2))
    assert seen[2 * C:3 * C] == b'\x11' * 4096 + b'\x61' * 12 + b'\x11' * (C - 4108)   # the target's cluster
    assert seen[8 * C:9 * C] == b'\x42' * C


def test_policy_source_writes_the_shadowed_cluster_into_the_top(images, tmp_path):
    top = create(tmp_path / 'top.qcow2', backing=images['tip'])
    write(top, (2 * C + 4096, 12, 0x61), (6 * C, 12, 0x62))
    carry, result, seen = merge_and_carry(images, tmp_path, top, 'source')
    assert (carry.write, carry.conflicts) == (clusters(2), clusters(2))
    src = disk_bytes(images['source'], tmp_path)
    assert seen[2 * C:3 * C] == src[2 * C:3 * C] == result[2 * C:3 * C]
    assert seen[6 * C:6 * C + 12] == b'\x62' * 12 and seen[8 * C:9 * C] == b'\x42' * C


def test_a_top_not_directly_on_the_tip_is_refused(images, tmp_path):
    middle = create(tmp_path / 'middle.qcow2', backing=images['tip'])
    top = create(tmp_path / 'top.qcow2', backing=middle)
    with pytest.raises(Refused, match='is not an overlay on'):
        plan_carry(QEMU, images['ancestor'], images['source'], images['tip'], top, 'fail')
