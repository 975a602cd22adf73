# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Three-way merge of qcow2 disk states, on real images made with qemu-img and qemu-io.

Every expectation is about bytes: what the merged image shows, read back with qemu-img.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NovaError
from ansible_collections.nova.snapshots.plugins.module_utils.operations._merge import (
    MergeConflict, apply_merge, changed_ranges, plan_merge)
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import QemuImg

C = 65536          # qcow2's default cluster size, which every image here uses
MiB = 1024 * 1024


def run_command(cmd, environ_update=None):
    """AnsibleModule.run_command, as far as QemuImg uses it."""
    env = dict(os.environ, **(environ_update or {}))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


QEMU = QemuImg(run_command)


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def create(path, size=None, backing=None, fmt='qcow2', backing_fmt='qcow2'):
    path = str(path)
    if backing is None:
        sh('qemu-img', 'create', '-q', '-f', fmt, path, str(size))
    else:
        sh('qemu-img', 'create', '-q', '-f', 'qcow2', '-F', backing_fmt, '-b', str(backing), path)
    return path


def write(path, *writes, fmt='qcow2'):
    """writes: (offset, length, pattern byte, or None for a write of zeros)."""
    cmds = []
    for off, length, pattern in writes:
        cmds += ['-c', 'write -z %d %d' % (off, length) if pattern is None else 'write -P 0x%02x %d %d' % (pattern, off, length)]
    if cmds:
        sh('qemu-io', '-f', fmt, *cmds, str(path))


def disk_bytes(path, tmpdir, fmt='qcow2'):
    """What a guest sees on the disk `path`, through its backing chain."""
    out = os.path.join(str(tmpdir), 'readback.raw')
    sh('qemu-img', 'convert', '-U', '-f', fmt, '-O', 'raw', str(path), out)
    with open(out, 'rb') as f:
        data = f.read()
    os.unlink(out)
    return data


def digest(paths):
    return {p: hashlib.sha256(open(p, 'rb').read()).hexdigest() for p in paths}


def clusters(*numbers):
    """Coalesced (offset, length) ranges covering the given cluster numbers."""
    out = []
    for n in sorted(numbers):
        if out and out[-1][0] + out[-1][1] == n * C:
            out[-1] = (out[-1][0], out[-1][1] + C)
        else:
            out.append((n * C, C))
    return out


def merged(tmp, name, target, source, plan):
    result = create(tmp / name, backing=target)
    apply_merge(QEMU, source, result, plan.copy)
    return result


# ----------------------------------------------------------------------------------------------
# A hand-made history: base <- ancestor <- s1 <- s2 (source) and ancestor <- t1 <- t2 (target).

SIZE = 32 * C
SOURCE_WRITES = [  # (layer, offset, length, pattern)
    ('s1', 2 * C, C, 0x41),                 # source only
    ('s2', 3 * C + 100, 1000, 0x42),        # source only, part of a cluster
    ('s1', 6 * C, C, 0x61),                 # same bytes on both sides
    ('s2', 7 * C, C, 0x71),                 # conflict
    ('s1', 9 * C, 3 * C, 0x73),             # source only, except the middle cluster: conflict
    ('s2', 13 * C, C, None),                # source only: zeros over the base's data
    ('s1', 14 * C, C, 0x75),                # conflict with the target's zeros
    ('s1', 16 * C, 3 * C + 4096, 0x43),     # source only, spans four clusters
    ('s1', 20 * C, C, 0x44),                # source only, overwritten by the next layer
    ('s2', 20 * C, C, 0x45),
    ('s2', 22 * C, C, None),                # zeros on both sides: identical
    ('s1', 26 * C, 3 * C, 0x66),            # both sides, same bytes except the middle cluster
    ('s2', 30 * C, 100, 0x11),              # rewrites what the base has there: a change all the same
]
TARGET_WRITES = [
    ('t1', 4 * C, C, 0x51),                 # target only
    ('t2', 5 * C, C, 0x52),                 # target only
    ('t2', 6 * C, C, 0x61),
    ('t1', 7 * C, C, 0x72),
    ('t2', 10 * C, C, 0x74),
    ('t1', 14 * C, C, None),
    ('t2', 22 * C, C, None),
    ('t1', 24 * C, C, 0x53),                # target only, rewritten in part by the next layer
    ('t2', 24 * C + 100, 100, 0x54),
    ('t1', 26 * C, 3 * C, 0x66),
    ('t2', 27 * C, C, 0x67),
]
SOURCE_ONLY = clusters(2, 3, 9, 11, 13, 16, 17, 18, 19, 20, 30)
CONFLICTS = clusters(7, 10, 14, 27)
IDENTICAL = clusters(6, 22, 26, 28)


@pytest.fixture
def history(tmp_path):
    img = {}
    img['base'] = create(tmp_path / 'base.qcow2', size=SIZE)
    write(img['base'], (0, SIZE // 2, 0x11))                      # the second half stays unallocated
    img['ancestor'] = create(tmp_path / 'ancestor.qcow2', backing=img['base'])
    write(img['ancestor'], (C, C, 0x22), (7 * C, C, 0x23))
    for layer, below in (('s1', 'ancestor'), ('s2', 's1'), ('t1', 'ancestor'), ('t2', 't1')):
        img[layer] = create(tmp_path / ('%s.qcow2' % layer), backing=img[below])
        write(img[layer], *[(off, length, pat) for name, off, length, pat in SOURCE_WRITES + TARGET_WRITES if name == layer])
    img['source'], img['target'] = img['s2'], img['t2']
    scratch = tmp_path / 'scratch'
    scratch.mkdir()
    img['scratch'] = str(scratch)
    return img


def test_changed_ranges_are_the_allocations_above_the_ancestor(history):
    assert changed_ranges(QEMU, history['source'], history['ancestor']) == clusters(
        2, 3, 6, 7, 9, 10, 11, 13, 14, 16, 17, 18, 19, 20, 22, 26, 27, 28, 30)
    assert changed_ranges(QEMU, history['source'], history['s1']) == clusters(3, 7, 13, 20, 22, 30)
    assert changed_ranges(QEMU, history['source'], history['source']) == []
    # from the base: the ancestor's own clusters count too, the unallocated half of the base does not
    assert changed_ranges(QEMU, history['t1'], history['base']) == clusters(1, 4, 7, 14, 24, 26, 27, 28)


def test_an_ancestor_outside_the_chain_is_refused(history):
    with pytest.raises(NovaError, match='not in the backing chain'):
        changed_ranges(QEMU, history['source'], history['t1'])
    with pytest.raises(NovaError, match='not in the backing chain'):
        plan_merge(QEMU, history['t1'], history['source'], history['target'], 'target')


def test_plan_sorts_changes_into_copy_conflicts_identical(history):
    plan = plan_merge(QEMU, history['ancestor'], history['source'], history['target'], 'target',
                      device='vda', tmpdir=history['scratch'])
    assert plan.copy == SOURCE_ONLY
    assert plan.conflicts == CONFLICTS
    assert plan.identical == IDENTICAL
    assert plan.granularity == C
    assert os.listdir(history['scratch']) == []
    plan = plan_merge(QEMU, history['ancestor'], history['source'], history['target'], 'source', tmpdir=history['scratch'])
    assert plan.copy == clusters(2, 3, 7, 9, 10, 11, 13, 14, 16, 17, 18, 19, 20, 27, 30)
    assert (plan.conflicts, plan.identical) == (CONFLICTS, IDENTICAL)


def test_policy_fail_names_every_conflict_and_changes_nothing(history, tmp_path):
    result = create(tmp_path / 'result.qcow2', backing=history['target'])
    images = [history[k] for k in ('base', 'ancestor', 's1', 's2', 't1', 't2')] + [result]
    before = digest(images)
    with pytest.raises(MergeConflict) as e:
        plan_merge(QEMU, history['ancestor'], history['source'], history['target'], 'fail',
                   device='vda', tmpdir=history['scratch'])
    assert e.value.msg == ('vda: bytes 458752-524287, 655360-720895, 917504-983039, 1769472-1835007 '
                           'changed on both sides')
    assert e.value.conflicts == CONFLICTS
    assert digest(images) == before
    assert os.listdir(history['scratch']) == []


def test_policy_fail_without_conflicts_plans_the_source_only_changes(history, tmp_path):
    # merging a target into itself plus one more layer: nothing on both sides differs
    extra = create(tmp_path / 'extra.qcow2', backing=history['target'])
    write(extra, (31 * C, C, 0x7a))
    plan = plan_merge(QEMU, history['ancestor'], extra, history['target'], 'fail')
    assert plan.conflicts == []
    assert plan.copy == clusters(31)


@pytest.mark.parametrize('policy', ['source', 'target'])
def test_merge_result_bytes(history, tmp_path, policy):
    plan = plan_merge(QEMU, history['ancestor'], history['source'], history['target'], policy, tmpdir=history['scratch'])
    result = merged(tmp_path, 'result.qcow2', history['target'], history['source'], plan)
    got = disk_bytes(result, tmp_path)
    src, tgt = disk_bytes(history['source'], tmp_path), disk_bytes(history['target'], tmp_path)
    taken_from_source = SOURCE_ONLY + (CONFLICTS if policy == 'source' else [])
    for n in range(SIZE // C):
        block = slice(n * C, (n + 1) * C)
        want = src if any(off <= n * C < off + length for off, length in taken_from_source) else tgt
        assert got[block] == want[block], 'cluster %d' % n
    # spot checks written out by hand
    assert got[2 * C:3 * C] == b'\x41' * C                              # source only
    assert got[3 * C + 100:3 * C + 1100] == b'\x42' * 1000
    assert got[3 * C:3 * C + 100] == b'\x11' * 100                      # rest of that cluster: the base
    assert got[4 * C:6 * C] == b'\x51' * C + b'\x52' * C                # target only
    assert got[6 * C:7 * C] == b'\x61' * C                              # identical
    assert got[13 * C:14 * C] == b'\0' * C                              # the source's zeros
    assert got[16 * C:19 * C + 4096] == b'\x43' * (3 * C + 4096)
    assert got[19 * C + 4096:20 * C] == b'\0' * (C - 4096)              # second half of the base: zeros
    assert got[20 * C:21 * C] == b'\x45' * C                            # top source layer wins
    assert got[24 * C + 100:24 * C + 200] == b'\x54' * 100
    assert got[26 * C:27 * C] == got[28 * C:29 * C] == b'\x66' * C
    if policy == 'source':
        assert got[7 * C:8 * C] == b'\x71' * C
        assert got[9 * C:12 * C] == b'\x73' * (3 * C)
        assert got[14 * C:15 * C] == b'\x75' * C
        assert got[27 * C:28 * C] == b'\x66' * C
    else:
        assert got[7 * C:8 * C] == b'\x72' * C
        assert got[9 * C:12 * C] == b'\x73' * C + b'\x74' * C + b'\x73' * C
        assert got[14 * C:15 * C] == b'\0' * C
        assert got[27 * C:28 * C] == b'\x67' * C
    # the result only holds what was copied: everything else still comes from the target's chain
    assert changed_ranges(QEMU, result, history['target']) == plan.copy


def test_ancestor_can_be_a_raw_base(tmp_path):
    base = create(tmp_path / 'base.raw', size=8 * C, fmt='raw')
    write(base, (0, 8 * C, 0x11), fmt='raw')
    source = create(tmp_path / 's.qcow2', backing=base, backing_fmt='raw')
    target = create(tmp_path / 't.qcow2', backing=base, backing_fmt='raw')
    write(source, (C, C, 0x41), (3 * C, C, 0x43))
    write(target, (3 * C, C, 0x53), (5 * C, C, 0x55))
    plan = plan_merge(QEMU, base, source, target, 'source')
    assert (plan.copy, plan.conflicts) == (clusters(1, 3), clusters(3))
    result = merged(tmp_path, 'r.qcow2', target, source, plan)
    assert disk_bytes(result, tmp_path) == (b'\x11' * C + b'\x41' * C + b'\x11' * C + b'\x43' * C
                                            + b'\x11' * C + b'\x55' * C + b'\x11' * 2 * C)


def test_disks_of_different_sizes_are_refused(tmp_path):
    base = create(tmp_path / 'base.qcow2', size=8 * C)
    source = create(tmp_path / 's.qcow2', backing=base)
    target = create(tmp_path / 't.qcow2', backing=base)
    sh('qemu-img', 'resize', '-q', '-f', 'qcow2', target, str(16 * C))
    with pytest.raises(NovaError, match='different sizes'):
        plan_merge(QEMU, base, source, target, 'target')


def test_unknown_policy_is_refused(history):
    with pytest.raises(NovaError, match='unknown merge policy'):
        plan_merge(QEMU, history['ancestor'], history['source'], history['target'], 'theirs')


# ----------------------------------------------------------------------------------------------
# Property: the merge equals a reference computed on plain byte arrays.

def _write_strategy(n_clusters):
    size = n_clusters * C
    aligned = st.tuples(st.integers(0, n_clusters - 1), st.integers(1, 3)).map(
        lambda t: (t[0] * C, min(t[1], n_clusters - t[0]) * C))
    unaligned = st.integers(0, size - 1).flatmap(lambda off: st.tuples(st.just(off), st.integers(1, min(3 * C, size - off))))
    return st.tuples(st.one_of(aligned, unaligned), st.sampled_from([0x41, 0x42, None]))


@st.composite
def histories(draw):
    n_clusters = draw(st.sampled_from([16, 32]))             # 1 or 2 MiB
    writes = _write_strategy(n_clusters)
    layers = st.lists(st.lists(writes, max_size=4), min_size=1, max_size=2)
    return n_clusters, draw(st.lists(writes, max_size=3)), draw(layers), draw(layers)


def _apply(buf, writes):
    touched = set()
    for (off, length), pattern in writes:
        buf[off:off + length] = bytes([pattern or 0]) * length
        touched.update(range(off // C, (off + length - 1) // C + 1))
    return touched


def _as_ranges(cluster_numbers):
    return clusters(*cluster_numbers) if cluster_numbers else []


def _build_chain(tmp, prefix, below, layers):
    top = below
    for i, layer in enumerate(layers):
        top = create(os.path.join(tmp, '%s%d.qcow2' % (prefix, i)), backing=top)
        write(top, *[(off, length, pattern) for (off, length), pattern in layer])
    return top


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_merge_matches_a_reference_on_byte_arrays(example):
    n_clusters, ancestor_writes, source_layers, target_layers = example
    size = n_clusters * C
    # the reference: the base holds 0x11 in its first half, zeros (unallocated) after
    anc = bytearray(b'\x11' * (size // 2) + b'\0' * (size // 2))
    _apply(anc, ancestor_writes)
    src, tgt = bytearray(anc), bytearray(anc)
    src_changed = set().union(*[_apply(src, layer) for layer in source_layers])
    tgt_changed = set().union(*[_apply(tgt, layer) for layer in target_layers])

    def cl(buf, n):
        return bytes(buf[n * C:(n + 1) * C])

    both = src_changed & tgt_changed
    conflicts = sorted(n for n in both if cl(src, n) != cl(tgt, n))
    identical = sorted(n for n in both if cl(src, n) == cl(tgt, n))
    source_only = sorted(src_changed - tgt_changed)

    with tempfile.TemporaryDirectory() as tmp:
        base = create(os.path.join(tmp, 'base.qcow2'), size=size)
        write(base, (0, size // 2, 0x11))
        ancestor = create(os.path.join(tmp, 'ancestor.qcow2'), backing=base)
        write(ancestor, *[(off, length, pattern) for (off, length), pattern in ancestor_writes])
        source = _build_chain(tmp, 's', ancestor, source_layers)
        target = _build_chain(tmp, 't', ancestor, target_layers)
        # the reference models the images: same bytes, same allocation
        assert disk_bytes(source, tmp) == bytes(src) and disk_bytes(target, tmp) == bytes(tgt)
        assert changed_ranges(QEMU, source, ancestor) == _as_ranges(src_changed)

        for policy in ('fail', 'source', 'target'):
            if policy == 'fail' and conflicts:
                with pytest.raises(MergeConflict) as e:
                    plan_merge(QEMU, ancestor, source, target, policy, device='vdb')
                assert e.value.conflicts == _as_ranges(conflicts)
                continue
            plan = plan_merge(QEMU, ancestor, source, target, policy, device='vdb')
            take = set(source_only) | (set(conflicts) if policy == 'source' else set())
            assert plan.copy == _as_ranges(take)
            assert plan.conflicts == _as_ranges(conflicts)
            assert plan.identical == _as_ranges(identical)
            result = create(os.path.join(tmp, 'result-%s.qcow2' % policy), backing=target)
            apply_merge(QEMU, source, result, plan.copy)
            want = b''.join(cl(src, n) if n in take else cl(tgt, n) for n in range(n_clusters))
            assert disk_bytes(result, tmp) == want
