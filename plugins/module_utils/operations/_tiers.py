# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Storage tiers: frozen layers the VM reads on fast storage, the rest on slow storage.

A layer is moved by copying it (sparse, same owner and mode), rebasing the images above it onto
the copy (header only: the bytes are the same), repointing the records, and only then removing the
old file. A LUKS layer moves the same way (its bytes are ciphertext; no key needed); an
encrypted image above it is opened with the key for its header (plan_chains gives m.qemu_img the
key). A crash at any point leaves every chain complete; running again finishes the move.
Layers a running VM holds open are not moved (QEMU would keep the old file and its name).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._chains import needed_files, real
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import OVERLAY_RESERVE, disk_usage, install, require_free
from ansible_collections.nova.snapshots.plugins.module_utils.operations._checksums import refresh_checksums


def _under(path, directory):
    return real(path).startswith(real(directory) + os.sep)


def plan_moves(manager, tree, active_storage=None, archive_storage=None):
    """[(layer, destination directory, why)] and [skipped {file, reason}] for the tiers given."""
    m = manager
    tops = set(real(t) for t in m.writable_tops(tree))
    frozen = [p for p in sorted(needed_files(m.view, m.all_tops(tree))) if p not in tops and m.store.owns(p)]
    current = set()
    for top in m.active_tops():
        current.update(real(p) for p in m.view.chain(top))
    open_now = m.open_images()
    moves, skipped = [], []
    for path in frozen:
        if path in current and active_storage and not _under(path, active_storage):
            if path in open_now:
                skipped.append(dict(file=path, reason='read by the running VM; moved to active storage while it is off'))
            else:
                moves.append((path, active_storage, 'the VM reads it'))
        elif path not in current and archive_storage and not _under(path, archive_storage):
            moves.append((path, archive_storage, 'the VM does not read it'))
    return moves, skipped


def new_name(store, path):
    """A name for `path` on another tier that stays unique: the store's relative path, flattened."""
    rel = None
    for root in [store.root] + store.tier_dirs():
        if _under(path, root):
            rel = os.path.relpath(real(path), real(root))
    return (rel or os.path.basename(path)).replace(os.sep, '-')


def move_layer(manager, tree, path, tier_root):
    m = manager
    dest_dir = m.store.tier_dir(tier_root)
    dest = os.path.join(dest_dir, new_name(m.store, path))
    size = disk_usage(path) or 0
    require_free(dest_dir, size + OVERLAY_RESERVE, 'moving %s there' % path)
    tmp = dest + '.nova-move'
    m.qemu_img.copy_sparse(path, tmp)
    install(tmp, dest)
    fmt = m.view.info(path).format
    rebased = {}
    for top in m.all_tops(tree):
        for image in m.view.chain(top):
            if real(m.view.backing(image) or '') == real(path):
                m.qemu_img.rebase(image, dest, fmt, unsafe=True)
                rebased[image] = image
    tree.repoint_image(path, dest, key=real)
    refresh_checksums(m, tree, dict(rebased, **{path: dest}), 'a move to %s' % dest_dir)
    m.store.save(tree)
    m.view.invalidate()
    os.unlink(path)
    return dest
