# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Block-level three-way merge of qcow2 disk states.

The ancestor state is image A; the source and target states are read through images S and T whose
backing chains both contain A. What a side changed since A is what the layers of its chain above A
have allocated (zero clusters included). That over-approximates change, so ranges both sides
allocated are compared byte by byte before they count as conflicts.

Ranges are lists of (offset, length) in disk bytes, sorted and coalesced.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import bisect
import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters import _scratch
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Conflict, Failed, Refused

POLICIES = ('fail', 'source', 'target')
DEFAULT_GRANULARITY = 65536             # qcow2's default cluster size
COMPARE_CHUNK = 16 * 1024 * 1024        # bytes read (or extracted) per side at a time when comparing


class MergeConflict(Conflict):
    """Both sides changed the same bytes differently and the policy is `fail`."""

    def __init__(self, device, conflicts):
        spans = ', '.join('%d-%d' % (off, off + length - 1) for off, length in conflicts)
        prefix = '%s: ' % device if device else ''
        super(MergeConflict, self).__init__('%sbytes %s changed on both sides' % (prefix, spans),
                                            device=device, conflicts=list(conflicts))
        self.device = device
        self.conflicts = list(conflicts)


class MergePlan(object):
    """What merging the source into the target does; every range list is sorted and coalesced.

    copy: ranges to write from the source into the result (conflicts included when policy is `source`).
    conflicts: ranges both sides changed to different bytes.
    identical: ranges both sides changed to the same bytes (nothing to do).
    """

    def __init__(self, device, policy, source_changed, target_changed, copy, conflicts, identical, granularity):
        self.device = device
        self.policy = policy
        self.source_changed = source_changed
        self.target_changed = target_changed
        self.copy = copy
        self.conflicts = conflicts
        self.identical = identical
        self.granularity = granularity

    @property
    def copy_bytes(self):
        return sum(length for _off, length in self.copy)


# Interval arithmetic on sorted lists of half-open (start, end) spans.

def _coalesce(spans):
    out = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _intersect(a, b):
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _subtract(a, b):
    out = []
    j = 0
    for start, end in a:
        while j < len(b) and b[j][1] <= start:
            j += 1
        k = j
        while k < len(b) and b[k][0] < end:
            if b[k][0] > start:
                out.append((start, b[k][0]))
            start = max(start, b[k][1])
            k += 1
        if start < end:
            out.append((start, end))
    return out


def _pieces(start, end, size):
    """Split [start, end) at the multiples of `size`."""
    while start < end:
        cut = min(end, (start // size + 1) * size)
        yield start, cut
        start = cut


def _ranges(spans):
    return [(start, end - start) for start, end in spans]


def _spans(ranges):
    return _coalesce((off, off + length) for off, length in ranges)


def _side(qemu_img, top, ancestor, fmt):
    """(changed spans, chain of `top` as [ImageInfo], index of `ancestor` in it, map of `top` or None)."""
    chain = qemu_img.chain(top, fmt)
    paths = [top] + [info.backing_file for info in chain[:-1]]
    want = os.path.realpath(ancestor)
    depths = [i for i, path in enumerate(paths) if path and os.path.realpath(path) == want]
    if not depths:
        raise Refused('%s is not in the backing chain of %s (%s)' % (ancestor, top, ' <- '.join(str(p) for p in paths)),
                      image=top, ancestor=ancestor, chain=paths)
    depth = depths[0]
    if depth == 0:
        return [], chain, depth, None
    # One map of the top is enough: an extent's depth is the topmost layer that allocates it, so it
    # is allocated in some layer above the ancestor exactly when that depth is above the ancestor's.
    extents = qemu_img.map(top, fmt)
    spans = [(e.start, e.start + e.length) for e in extents if e.present and e.depth < depth]
    return _coalesce(spans), chain, depth, extents


def changed_ranges(qemu_img, top, ancestor, fmt='qcow2'):
    """Ranges allocated in the layers of `top`'s chain strictly above `ancestor`.

    `fmt` is the format of `top`; the formats below come from the image headers.
    Raises NovaError if `ancestor` is not in the backing chain of `top`.
    """
    return _ranges(_side(qemu_img, top, ancestor, fmt)[0])


def _granularity(layers):
    sizes = [info.cluster_size for info in layers if info.cluster_size]
    return min(sizes) if sizes else DEFAULT_GRANULARITY


def _read_exactly(handle, length):
    data = handle.read(length)
    if len(data) != length:
        raise Failed('short read from %s: %d of %d bytes' % (handle.name, len(data), length))
    return data


class _InPlace(object):
    """Reads the bytes a disk shows straight from its layers' files, where `qemu-img map` says they lie
    as they are (an extent with an offset: not compressed, not encrypted) or are zero; read() answers
    None for a range it cannot read so (then it is extracted with qemu-img)."""

    def __init__(self, chain, extents):
        self.extents = sorted((e.start, e.start + e.length, e) for e in extents or [])
        self.starts = [start for start, _end, _e in self.extents]
        # only plain files of formats whose offsets point into the file itself (no external data file)
        self.files = [info.filename if self._plain(info) else None for info in chain]
        self.handles = {}

    @staticmethod
    def _plain(info):
        specific = (info.raw.get('format-specific') or {}).get('data') or {}
        return (info.format in ('qcow2', 'raw') and not specific.get('data-file') and not info.raw.get('encrypted')
                and bool(info.filename) and os.path.isabs(info.filename) and os.path.isfile(info.filename))

    def read(self, start, end):
        out = []
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        pos = start
        while pos < end:
            if i >= len(self.extents) or self.extents[i][0] > pos:
                return None                     # a hole in the map: not ours to guess
            e_start, e_end, e = self.extents[i]
            if e_end <= pos:
                i += 1
                continue
            piece_end = min(end, e_end)
            length = piece_end - pos
            if not e.present or e.zero:
                out.append(bytes(length))
            elif e.data and e.offset is not None and e.depth < len(self.files) and self.files[e.depth]:
                data = os.pread(self._handle(self.files[e.depth]), length, e.offset + pos - e_start)
                if len(data) != length:
                    return None
                out.append(data)
            else:
                return None
            pos = piece_end
            i += 1
        return b''.join(out)

    def _handle(self, path):
        if path not in self.handles:
            self.handles[path] = os.open(path, os.O_RDONLY)
        return self.handles[path]

    def close(self):
        for fd in self.handles.values():
            os.close(fd)
        self.handles = {}


def _extracted(qemu_img, image, fmt, start, end, scratch):
    path = os.path.join(scratch, 'window.raw')
    qemu_img.extract(image, fmt, start, end - start, path)
    try:
        with open(path, 'rb') as f:
            return _read_exactly(f, end - start)
    finally:
        os.unlink(path)


def _compare(qemu_img, source, target, fmt, spans, granularity, tmpdir, views=(None, None)):
    """Split `spans` into (identical, different) by the bytes each side shows, block by block.

    The bytes are read in place (views: _InPlace of each side) where the maps allow, else extracted
    with qemu-img, COMPARE_CHUNK at a time; a chunk equal as a whole needs no block-by-block look."""
    identical, different = [], []
    if not spans:
        return identical, different
    scratch = _scratch.make('nova-merge-', tmpdir)
    try:
        for start, end in spans:
            for chunk_start, chunk_end in _pieces(start, end, COMPARE_CHUNK):
                src, tgt = [(view.read(chunk_start, chunk_end) if view else None) for view in views]
                if src is None:
                    src = _extracted(qemu_img, source, fmt, chunk_start, chunk_end, scratch)
                if tgt is None:
                    tgt = _extracted(qemu_img, target, fmt, chunk_start, chunk_end, scratch)
                if src == tgt:
                    identical.append((chunk_start, chunk_end))
                    continue
                src, tgt = memoryview(src), memoryview(tgt)
                for block_start, block_end in _pieces(chunk_start, chunk_end, granularity):
                    a, b = block_start - chunk_start, block_end - chunk_start
                    (identical if src[a:b] == tgt[a:b] else different).append((block_start, block_end))
    finally:
        for view in views:
            if view:
                view.close()
        _scratch.remove(scratch)
    return _coalesce(identical), _coalesce(different)


# A run plans twice (without the lock, then under it): the second plan of the same, unchanged
# images reuses the first one's comparison. Keyed by every file of both chains as it is on disk.
_COMPARED = {}


def _compare_key(src_chain, tgt_chain, spans, granularity):
    files = []
    for info in list(src_chain) + list(tgt_chain):
        if not (info.filename and os.path.isabs(info.filename)):
            return None
        try:
            st = os.stat(info.filename)
        except OSError:
            return None
        files.append((os.path.realpath(info.filename), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return (tuple(files), tuple(spans), granularity)


def plan_merge(qemu_img, ancestor, source, target, policy='fail', device=None, fmt='qcow2', tmpdir=None):
    """Plan merging the changes `source` made since `ancestor` into `target`; returns a MergePlan.

    `fmt` is the format of `source` and `target` (the images below name theirs in their headers).
    Ranges both sides changed are compared at the smallest cluster size of the layers above the
    ancestor; their bytes are extracted into a scratch directory under `tmpdir` (removed afterwards).
    Raises MergeConflict when `policy` is `fail` and there are conflicts, NovaError when `ancestor`
    is not in both chains or the two disks differ in size.
    """
    if policy not in POLICIES:
        raise Refused('unknown merge policy %r (expected one of %s)' % (policy, ', '.join(POLICIES)))
    src_spans, src_chain, src_depth, src_map = _side(qemu_img, source, ancestor, fmt)
    tgt_spans, tgt_chain, tgt_depth, tgt_map = _side(qemu_img, target, ancestor, fmt)
    src_size, tgt_size = src_chain[0].virtual_size, tgt_chain[0].virtual_size
    if src_size != tgt_size:
        raise Refused('%scannot merge disks of different sizes: source %s is %s bytes, target %s is %s bytes'
                      % ('%s: ' % device if device else '', source, src_size, target, tgt_size),
                      device=device, source=source, target=target)
    granularity = _granularity(src_chain[:src_depth] + tgt_chain[:tgt_depth])
    both = _intersect(src_spans, tgt_spans)
    key = _compare_key(src_chain, tgt_chain, both, granularity)
    if key is None or key not in _COMPARED:
        views = (_InPlace(src_chain, src_map), _InPlace(tgt_chain, tgt_map))
        found = _compare(qemu_img, source, target, fmt, both, granularity, tmpdir, views)
        if key is not None:
            if len(_COMPARED) >= 16:
                _COMPARED.clear()
            _COMPARED[key] = found
    identical, conflicts = _COMPARED[key] if key is not None else found
    if conflicts and policy == 'fail':
        raise MergeConflict(device, _ranges(conflicts))
    copy = _subtract(src_spans, tgt_spans)
    if policy == 'source':
        copy = _coalesce(copy + conflicts)
    return MergePlan(device, policy, _ranges(src_spans), _ranges(tgt_spans), _ranges(copy),
                     _ranges(conflicts), _ranges(identical), granularity)


def apply_merge(qemu_img, source, result, ranges, fmt='qcow2', result_fmt='qcow2'):
    """Write the bytes `source` shows in `ranges` into `result`, at the same offsets; returns bytes written.

    `result` is normally a fresh qcow2 overlay on the target's image, so it ends up showing the target's
    state with the source's bytes in `ranges`. Raises NovaError if the two disks differ in size.
    """
    spans = _spans(ranges)
    if not spans:
        return 0
    src_size, res_size = qemu_img.info(source, fmt).virtual_size, qemu_img.info(result, result_fmt).virtual_size
    if src_size != res_size or spans[-1][1] > res_size:
        raise Refused('cannot merge %s (%s bytes) into %s (%s bytes)' % (source, src_size, result, res_size),
                      source=source, result=result)
    for start, end in spans:
        qemu_img.copy_bytes(source, fmt, result, result_fmt, start, end - start)
    return sum(end - start for start, end in spans)


class CarryPlan(object):
    """What carrying a branch's own writes (its top image `top`, an overlay on its old tip) over onto
    the merge result needs besides the header-only rebase.

    The top's clusters shadow the merge result wherever the top allocated them, and qcow2 allocates
    whole clusters: a 12-byte write copies the other 65524 bytes of its cluster from the old tip.
    So the top is planned as the target's side of the merge (its writes since the tip count as
    changes), and `write` are the ranges of the source to write into the top itself (with policy
    `source`, the conflicts the top shadows); `conflicts` are the ones the top's writes take part in.
    """

    def __init__(self, device, top, write, conflicts):
        self.device = device
        self.top = top
        self.write = write
        self.conflicts = conflicts


def plan_carry(qemu_img, ancestor, source, tip, top, policy='fail', device=None, tmpdir=None):
    """Plan carrying `top` (an overlay whose backing file is `tip`) over onto the merge of `source`
    (changes since `ancestor`) into `tip`; returns a CarryPlan.

    Raises MergeConflict when the top's own writes and the source changed a cluster differently and
    the policy is `fail`; Refused when `tip` is not the top's backing file (a header-only rebase
    would then drop the layers between them).
    """
    backing = qemu_img.info(top).backing_file
    if not backing or os.path.realpath(backing) != os.path.realpath(tip):
        raise Refused('%s%s is not an overlay on %s (its backing file is %s); its writes cannot be carried over'
                      % ('%s: ' % device if device else '', top, tip, backing), image=top, tip=tip)
    plan = plan_merge(qemu_img, ancestor, source, top, policy, device=device, tmpdir=tmpdir)
    own = _spans(changed_ranges(qemu_img, top, tip))
    return CarryPlan(device, top, _ranges(_intersect(_spans(plan.copy), own)), plan.conflicts)
