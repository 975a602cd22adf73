# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""lxml model of the parts of libvirt's <domain> XML the collection edits: its disks.

Edits happen in place on the parsed tree, so everything else in the domain survives untouched.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._xml import Attr, Children, parse_xml, sub_element, to_string


class DiskXML(object):
    device = Attr('.', 'device')
    type = Attr('.', 'type')
    target = Attr('target', 'dev')
    driver_type = Attr('driver', 'type')
    snapshot = Attr('.', 'snapshot')        # the domain's own per-disk default: 'no' excludes the disk
    source_pool = Attr('source', 'pool')
    source_volume = Attr('source', 'volume')

    def __init__(self, root, volume_path=None):
        self.root = root
        self.volume_path = volume_path      # (pool, volume) -> path, for <disk type='volume'>

    @property
    def source_file(self):
        """The image the disk uses: a file, a block device, or a storage volume's path."""
        src = self.root.find('source')
        if src is None:
            return None
        if src.get('file') or src.get('dev'):
            return src.get('file') or src.get('dev')
        if self.type == 'volume' and self.volume_path and src.get('pool') and src.get('volume'):
            return self.volume_path(src.get('pool'), src.get('volume'))
        return None

    @property
    def excluded(self):
        """Marked snapshot='no' in the domain XML: left out unless a task names it."""
        return self.snapshot == 'no'

    @property
    def backing_file(self):
        """The backing image as a running domain's XML shows it: a path, '' for "none", None if not shown.

        libvirt fills <backingStore> for running domains only; callers ask qemu-img otherwise.
        """
        bs = self.root.find('backingStore')
        if bs is None:
            return None
        src = bs.find('source')
        return (src.get('file') or src.get('dev') or '') if src is not None else ''

    def live_chain(self):
        """The chain libvirt shows for a running domain's disk: [active, backing, ...]."""
        files = [self.source_file]
        node = self.root.find('backingStore')
        while node is not None and node.find('source') is not None:
            src = node.find('source')
            files.append(src.get('file') or src.get('dev'))
            node = node.find('backingStore')
        return files

    @property
    def readonly(self):
        return self.root.find('readonly') is not None

    @property
    def shareable(self):
        return self.root.find('shareable') is not None

    def why_not_writable(self):
        """None for a disk a snapshot can cover, else why not (for messages)."""
        if self.device not in (None, 'disk'):
            return 'it is a %s' % self.device
        if self.readonly:
            return 'it is read-only'
        if self.shareable:
            return 'it is shared with other domains'
        if self.source_file is None:
            return 'it has no image (a <disk type=%r> without a file, device or volume)' % self.type
        return None

    @property
    def writable(self):
        """A disk a snapshot covers by default: a read-write, unshared disk with an image."""
        return (self.device in (None, 'disk') and not self.readonly and not self.shareable
                and self.source_file is not None)

    def point_at(self, path, fmt='qcow2'):
        """Make the disk use image `path`.

        The <backingStore> element goes: an empty one means "no backing file", so keeping it
        would hide the frozen images under a new overlay (the guest would see an empty disk).
        Without it libvirt reads the chain from the image headers.
        """
        src = self.root.find('source')
        for attr in ('dev', 'index', 'pool', 'volume', 'mode'):
            src.attrib.pop(attr, None)
        self.root.set('type', 'file')
        src.set('file', path)
        driver = self.root.find('driver')
        if driver is None:
            driver = sub_element(self.root, 'driver', name='qemu')
        driver.set('type', fmt)
        for bs in self.root.findall('backingStore'):
            self.root.remove(bs)


class DomainXML(object):
    def __init__(self, xml, volume_path=None):
        """`xml` is text, or an lxml element (such as the <domain> inside a snapshot) to edit in place;
        `volume_path(pool, volume)` resolves disks that name a storage volume."""
        self.root = parse_xml(xml) if isinstance(xml, (str, bytes)) else xml
        self.volume_path = volume_path

    @property
    def name(self):
        return self.root.findtext('name')

    def rename(self, name, uuid):
        """Give the definition another domain's identity (a memory file's saved XML after a rename)."""
        for tag, value in (('name', name), ('uuid', uuid)):
            node = self.root.find(tag)
            if node is None:
                node = sub_element(self.root, tag)
            node.text = value

    disks = Children('devices/disk', DiskXML, context='volume_path')

    def disk(self, target):
        for d in self.disks:
            if d.target == target:
                return d
        return None

    @property
    def nvram(self):
        """The UEFI variable store a pflash domain writes (<os><nvram>), or None."""
        node = self.root.find('os/nvram')
        return node.text.strip() if node is not None and node.text and node.text.strip() else None

    @property
    def pflash(self):
        """Firmware from pflash (UEFI): libvirt 9.0 cannot take internal snapshots of such a domain."""
        loader = self.root.find('os/loader')
        return (loader is not None and loader.get('type') == 'pflash') or self.nvram is not None

    @property
    def memory_bytes(self):
        node = self.root.find('currentMemory')
        if node is None:
            node = self.root.find('memory')
        unit = (node.get('unit') or 'KiB').lower()
        scale = {'b': 1, 'bytes': 1, 'k': 1024, 'kib': 1024, 'kb': 1000, 'm': 1024 ** 2, 'mib': 1024 ** 2,
                 'mb': 1000 ** 2, 'g': 1024 ** 3, 'gib': 1024 ** 3, 'gb': 1000 ** 3}.get(unit, 1024)
        return int(node.text) * scale

    def to_string(self):
        return to_string(self.root)
