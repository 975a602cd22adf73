# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Backing chains as the image headers say, and the one rule about deleting images.

A file may be deleted only when nothing needs it: no snapshot's chain, no chain the domain's
persistent or live definition uses. `needed()` computes that set; everything that deletes an
image asks it first.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Failed, NotFound, NovaError

MAX_CHAIN = 1000   # far beyond QEMU's own limit; only stops a loop in corrupt headers


class ChainView(object):
    """qemu-img info for each image, read once per operation (call invalidate() after writes)."""

    def __init__(self, qemu_img):
        self.qemu_img = qemu_img
        self._info = {}

    def info(self, path):
        key = os.path.realpath(path)
        if key not in self._info:
            self._info[key] = self.qemu_img.info(path)
        return self._info[key]

    def backing(self, path):
        return self.info(path).backing_file

    def chain(self, path):
        """[path, its backing, ...] down to the base image."""
        if os.path.realpath(path) not in self._info:
            self._prefetch(path)
        out = []
        while path:
            if len(out) >= MAX_CHAIN or path in out:
                raise Failed('the backing chain of %s loops or is deeper than %d' % (out[0], MAX_CHAIN))
            if not os.path.exists(path):
                raise NotFound('image %s is missing (needed in the chain of %s)' % (path, out[0] if out else path))
            out.append(path)
            path = self.backing(path)
        return out

    def _prefetch(self, path):
        """One `qemu-img info --backing-chain` for the whole chain instead of one call per image.

        A broken chain makes it fail; the image-by-image walk then finds and names the problem."""
        try:
            infos = self.qemu_img.chain(path)
        except NovaError:
            return
        key = path
        for info in infos:
            if not key:
                break
            self._info.setdefault(os.path.realpath(key), info)
            key = info.backing_file

    def invalidate(self):
        self._info = {}


def real(path):
    return os.path.realpath(path)


def needed_files(view, tops):
    """Real paths of every image in the chains of `tops` (missing tops are skipped)."""
    needed = set()
    for top in set(tops):       # internal snapshots name one image each: 500 of them, one walk
        if top and os.path.exists(top):
            needed.update(real(p) for p in view.chain(top))
    return needed


def uppers(view, image, tops):
    """Images whose backing file is `image`, among the chains of `tops`."""
    target = real(image)
    found = []
    for top in tops:
        if not (top and os.path.exists(top)):
            continue
        for path in view.chain(top):
            backing = view.backing(path)
            if backing and real(backing) == target and real(path) not in [real(f) for f in found]:
                found.append(path)
    return found
