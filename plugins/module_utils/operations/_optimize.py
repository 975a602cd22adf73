# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Recompress or sparsify frozen layers, safely.

A layer is rewritten into a new file next to it (only its own data, on the same backing file),
proven equal with `qemu-img compare`, and renamed over the old one, so a crash leaves either the
old or the new file, both showing the same disk. Layers the running VM reads are left alone: QEMU
holds them open, and a later block job would reopen the new file with the old file's metadata.

What was rewritten is remembered in the store (file, size, mtime, settings), so running again with
the same settings does nothing, and check mode knows that without rewriting anything.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._chains import needed_files, real
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Failed, Refused
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import OVERLAY_RESERVE, disk_usage, install, require_free
from ansible_collections.nova.snapshots.plugins.module_utils.model._plan import Plan
from ansible_collections.nova.snapshots.plugins.module_utils.operations._checksums import refresh_checksums
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._luks import image_encrypted
from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import open_chains

COMPRESSIONS = ('zstd', 'zlib', 'none')


def _stamp(path):
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def plan_optimize(manager, tree, disks=None, compression='none', sparsify=True, key_file=None):
    """Rewrite the frozen layers of `disks`; a LUKS layer (read with `key_file`) is rewritten
    LUKS-encrypted with the same key, sparsified only."""
    open_chains(manager, tree=tree, key_file=key_file, what='optimization')
    if compression not in COMPRESSIONS:
        raise Refused('compression must be one of %s, not %r' % (', '.join(COMPRESSIONS), compression))
    if compression == 'none' and not sparsify:
        raise Refused('nothing to optimize: set compression (zstd or zlib) or sparsify')
    m = manager
    settings = dict(compression=compression, sparsify=bool(sparsify))
    done = m.store.optimized()
    dom = m.domain_xml()
    targets = m.target_disks(dom, disks)
    in_use = m.open_images()
    tops = set(real(t) for t in m.writable_tops(tree))
    wanted = set()
    for snap in tree.snapshots.values():
        wanted.update(real(d.file_path) for d in snap.disk_files if d.device in targets)
    for disk in dom.disks:
        if disk.target in targets and disk.source_file:
            wanted.update(real(p) for p in m.view.chain(disk.source_file))
    layers, skipped = [], []
    for path in sorted(wanted & needed_files(m.view, m.all_tops(tree))):
        why = None
        if path in tops:
            why = 'the image a VM or branch writes to'
        elif not m.store.owns(path):
            why = 'not created by the collection'
        elif path in in_use:
            why = 'read by the running VM; optimize it while the VM is off'
        elif m.view.info(path).format != 'qcow2' or m.view.info(path).snapshots:
            why = 'not a plain qcow2 layer'
        elif compression != 'none' and image_encrypted(m.view.info(path)):
            why = 'encrypted: qcow2 cannot compress encrypted clusters (compression none sparsifies it)'
        elif done.get(path, {}).get('stamp') == _stamp(path) and done[path].get('settings') == settings:
            continue          # already rewritten with these settings
        if why:
            skipped.append(dict(file=path, reason=why))
        else:
            layers.append(path)
    actions = ['rewrite %s (%s)' % (p, 'compression %s' % compression if compression != 'none' else 'sparsified')
               for p in layers]
    extra = dict(optimized=[], skipped=skipped, space_saved=0)

    def apply():
        record = m.store.optimized()
        for path in layers:
            saved = _rewrite(m, path, compression if compression != 'none' else None)
            if saved:
                refresh_checksums(m, tree, {path: path}, 'it was rewritten (optimized)')
            extra['optimized'].append(dict(file=path, saved=saved))
            extra['space_saved'] += saved
            record[path] = dict(stamp=_stamp(path), settings=settings)
            m.store.save_optimized(record)
        m.view.invalidate()
        return None
    return Plan(bool(layers), actions, before=dict(layers=layers), after=dict(settings=settings),
                apply=apply, extra=extra)


def _rewrite(m, path, compression):
    """Rewrite one layer in place, safely; the bytes it saved (0 when the new file is not smaller)."""
    info = m.view.info(path)
    need = m.qemu_img.measure_layer(path) + OVERLAY_RESERVE
    require_free(os.path.dirname(path), need, 'rewriting %s' % path)
    tmp = path + '.nova-rewrite'
    if os.path.exists(tmp):
        os.unlink(tmp)      # left by an interrupted run
    try:
        m.qemu_img.rewrite_layer(path, tmp, info.backing_file, info.backing_format, compression,
                                 rate=m.io_limit)
        if not m.qemu_img.compare(path, tmp):
            raise Failed('the rewritten copy of %s differs from it; the original was kept' % path)
        old, new = disk_usage(path) or 0, disk_usage(tmp) or 0
        if new >= old:
            os.unlink(tmp)
            return 0
        st = os.stat(path)
        os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, st.st_mode & 0o7777)
        install(tmp, path)
        return old - new
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
