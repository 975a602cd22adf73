# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The merge reads the bytes it compares in place from the layers' files where `qemu-img map` gives
their offset, and extracts them with qemu-img where it does not (compressed clusters): both ways
must give the same answer, on real images."""

from __future__ import annotations

import subprocess

from ansible_collections.nova.snapshots.plugins.module_utils.operations import _merge
from ansible_collections.nova.snapshots.plugins.module_utils.operations._merge import plan_merge

from test_merge import C, MiB, QEMU, create, write


def compressed(path, src):
    """`src` rewritten as a compressed qcow2 on the same backing (every data cluster compressed)."""
    backing = QEMU.info(src).backing_file
    subprocess.run(['qemu-img', 'convert', '-c', '-O', 'qcow2', '-B', backing, '-F', 'qcow2', src, str(path)],
                   check=True, capture_output=True)
    return str(path)


def history(tmp_path):
    base = create(tmp_path / 'base.qcow2', 8 * MiB)
    write(base, (0, 8 * MiB, 0x01))
    src = create(tmp_path / 'src.qcow2', backing=base)
    tgt = create(tmp_path / 'tgt.qcow2', backing=base)
    # 0-1M: both the same bytes; 1M-2M: both, different bytes; 2M-3M: source only; 3M-4M: zeros on both
    write(src, (0, MiB, 0x0a), (MiB, MiB, 0x0b), (2 * MiB, MiB, 0x0c), (3 * MiB, MiB, None), (5 * MiB + C, C, 0x0d))
    write(tgt, (0, MiB, 0x0a), (MiB, MiB, 0x0e), (3 * MiB, MiB, None), (5 * MiB + C, C, 0x0d), (5 * MiB + 3 * C, C, 0x0f))
    return base, src, tgt


def answer(plan):
    return plan.copy, plan.conflicts, plan.identical


def test_in_place_and_extracted_reads_agree(tmp_path, monkeypatch):
    base, src, tgt = history(tmp_path)
    in_place = answer(plan_merge(QEMU, base, src, tgt, 'source'))
    assert in_place[1] == [(MiB, MiB)]
    assert (0, MiB) in in_place[2] and (3 * MiB, MiB) in in_place[2]
    assert _merge._COMPARED, 'the comparison was not kept for the second plan of a run'
    monkeypatch.setattr(_merge, '_COMPARED', {})
    extracted = []
    monkeypatch.setattr(_merge._InPlace, 'read', lambda self, start, end: extracted.append(start))
    assert answer(plan_merge(QEMU, base, src, tgt, 'source')) == in_place
    assert extracted, 'the fallback was not taken'


def test_compressed_layers_are_extracted(tmp_path):
    base, src, tgt = history(tmp_path)
    want = answer(plan_merge(QEMU, base, src, tgt, 'source'))
    csrc, ctgt = compressed(tmp_path / 'csrc.qcow2', src), compressed(tmp_path / 'ctgt.qcow2', tgt)
    assert not any(e.offset is not None for e in QEMU.map(csrc) if e.depth == 0 and e.data)
    assert answer(plan_merge(QEMU, base, csrc, ctgt, 'source')) == want
