# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""lxml model of libvirt's <domainsnapshot> XML.

Properties read and write an XPath of the parsed tree in place, so elements this model does not
know (the embedded <domain>, <cookie>, future libvirt additions) survive a round trip untouched.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import traceback

try:
    from lxml import etree
except ImportError:
    HAS_LXML = False
    LXML_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_LXML = True
    LXML_IMPORT_ERROR = None


def parse_xml(text):
    """Parse XML text from libvirt or a file without resolving entities or touching the network."""
    if isinstance(text, str):
        text = text.encode('utf-8')
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
    return etree.fromstring(text, parser)


class _Text(object):
    """The text of the element at `path` (created on write, removed when set to None)."""

    def __init__(self, path, convert=str):
        self.path = path
        self.convert = convert

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        node = obj.root.find(self.path)
        if node is None or node.text is None:
            return None
        return self.convert(node.text.strip())

    def __set__(self, obj, value):
        node = obj.root.find(self.path)
        if value is None:
            if node is not None:
                node.getparent().remove(node)
            return
        if node is None:
            node = obj.root
            for part in self.path.split('/'):
                child = node.find(part)
                node = child if child is not None else etree.SubElement(node, part)
        node.text = str(value)


class _Attr(object):
    """Attribute `attr` of the element at `path`."""

    def __init__(self, path, attr):
        self.path = path
        self.attr = attr

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        node = obj.root.find(self.path)
        return None if node is None else node.get(self.attr)

    def __set__(self, obj, value):
        node = obj.root.find(self.path)
        if node is None:
            node = etree.SubElement(obj.root, self.path)
        if value is None:
            node.attrib.pop(self.attr, None)
        else:
            node.set(self.attr, value)


class SnapshotDiskXML(object):
    """One <disks>/<disk> entry."""

    name = _Attr('.', 'name')
    snapshot = _Attr('.', 'snapshot')
    source_file = _Attr('source', 'file')
    driver_type = _Attr('driver', 'type')

    def __init__(self, root):
        self.root = root


class SnapshotXML(object):
    """A <domainsnapshot> document."""

    name = _Text('name')
    description = _Text('description')
    state = _Text('state')
    creation_time = _Text('creationTime', int)
    parent = _Text('parent/name')
    memory_mode = _Attr('memory', 'snapshot')
    memory_file = _Attr('memory', 'file')

    def __init__(self, xml=None):
        self.root = parse_xml(xml) if xml is not None else etree.Element('domainsnapshot')

    @property
    def disks(self):
        return [SnapshotDiskXML(node) for node in self.root.findall('disks/disk')]

    @property
    def domain(self):
        """The <domain> libvirt stored with the snapshot (its configuration then), or None."""
        return self.root.find('domain')

    @property
    def is_external(self):
        return any(d.snapshot == 'external' for d in self.disks) or self.memory_mode == 'external'

    @property
    def snapshot_type(self):
        """The collection's type for a snapshot as libvirt describes it (DESIGN.md's table).

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
        return etree.tostring(self.root, pretty_print=True, encoding='unicode')
