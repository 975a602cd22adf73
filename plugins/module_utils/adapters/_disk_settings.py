# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""What decides a disk's speed besides its chain: the guest's disk settings in the domain XML and
the kind of storage a file lives on (rotational or not, from sysfs). Reads only."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._xml import Attr


class DiskSettings(object):
    """The performance settings of one <disk> element (a DiskXML's `root`)."""

    cache = Attr('driver', 'cache')
    io = Attr('driver', 'io')
    discard = Attr('driver', 'discard')
    detect_zeroes = Attr('driver', 'detect_zeroes')
    iothread = Attr('driver', 'iothread')
    bus = Attr('target', 'bus')

    def __init__(self, root):
        self.root = root

    def to_dict(self):
        return dict(cache=self.cache, io=self.io, discard=self.discard, detect_zeroes=self.detect_zeroes,
                    iothread=self.iothread, bus=self.bus)


def storage_kind(path, sys_root='/sys/dev/block'):
    """{device: 'MAJ:MIN', rotational: True/False/None} of the filesystem holding `path`.

    None when the kernel does not say (tmpfs, overlayfs, network filesystems)."""
    try:
        st = os.stat(path)
    except OSError:
        return dict(device=None, rotational=None)
    dev = '%d:%d' % (os.major(st.st_dev), os.minor(st.st_dev))
    for rel in ('queue/rotational', '../queue/rotational'):     # a whole disk, or a partition of one
        try:
            with open(os.path.join(sys_root, dev, rel)) as f:
                return dict(device=dev, rotational=f.read().strip() == '1')
        except (IOError, OSError):
            continue
    return dict(device=dev, rotational=None)
