# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""The <domainsnapshot> model (libvirt's snapshot XML)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._xml import (
    Attr,
    Children,
    Text,
    new_root,
    parse_xml,
    sub_element,
    to_string,
)


class SnapshotDiskXML(object):
    """One <disks>/<disk> entry."""

    name = Attr('.', 'name')
    snapshot = Attr('.', 'snapshot')
    source_file = Attr('source', 'file')
    driver_type = Attr('driver', 'type')

    def __init__(self, root):
        self.root = root


class SnapshotXML(object):
    """A <domainsnapshot> document."""

    name = Text('name')
    description = Text('description')
    state = Text('state')
    creation_time = Text('creationTime', int)
    parent = Text('parent/name')
    memory_mode = Attr('memory', 'snapshot')
    memory_file = Attr('memory', 'file')

    def __init__(self, xml=None):
        self.root = parse_xml(xml) if xml is not None else new_root('domainsnapshot')

    disks = Children('disks/disk', SnapshotDiskXML)

    def add_disk(self, name, snapshot, source_file=None, driver_type=None):
        """A <disks>/<disk> entry: snapshot 'no', 'internal' or 'external' (with its new overlay)."""
        disk = SnapshotXML.disks.add(self, name=name, snapshot=snapshot)
        if driver_type:
            sub_element(disk.root, 'driver', type=driver_type)
        if source_file:
            sub_element(disk.root, 'source', file=source_file)
        return disk

    @property
    def domain(self):
        """The <domain> libvirt stored with the snapshot (its configuration then), or None."""
        return self.root.find('domain')

    @property
    def is_external(self):
        return any(d.snapshot == 'external' for d in self.disks) or self.memory_mode == 'external'

    @property
    def snapshot_type(self):
        """The collection's type for a snapshot as libvirt describes it (the table in docs/snapshots.md).

        libvirt cannot tell `external` with RAM from `memory`: both are external disks plus an
        external memory file. Such snapshots read as `memory`; the collection's own store keeps the
        type it was created with.
        """
        if self.state == 'disk-snapshot' or (self.is_external and self.memory_mode != 'external'):
            return 'disk_only'
        if self.is_external:
            return 'memory'
        return 'internal'

    def to_string(self):
        return to_string(self.root, pretty=True)
