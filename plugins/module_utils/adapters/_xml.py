# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""The base of the XML models: safe parsing and small descriptors over lxml.

A model holds `root` (an lxml element) and declares its fields as descriptors over paths into it,
in the manner of virtinst: reads and edits go to the tree in place, so elements and attributes the
model does not know survive every round trip.
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


class Text(object):
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


class Attr(object):
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


class Children(object):
    """The elements at `path` (for example 'disks/disk') as a list of `model` objects.

    Read-only: a model adds children with add(), which creates the parent elements once. With
    `context`, each child also gets that attribute of its parent model (what it needs to know of
    its surroundings, such as how to resolve a storage volume).
    """

    def __init__(self, path, model, context=None):
        self.path = path
        self.model = model
        self.context = context

    def _make(self, obj, node):
        return self.model(node, getattr(obj, self.context)) if self.context else self.model(node)

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return [self._make(obj, node) for node in obj.root.findall(self.path)]

    def add(self, obj, **attrs):
        """Append a new child element (attributes `attrs`) under `path`, creating its parents."""
        parent = obj.root
        parts = self.path.split('/')
        for part in parts[:-1]:
            child = parent.find(part)
            parent = child if child is not None else etree.SubElement(parent, part)
        return self._make(obj, etree.SubElement(parent, parts[-1], **attrs))


def new_root(tag):
    return etree.Element(tag)


def sub_element(parent, tag, **attrs):
    """A new child of `parent` (attribute values are set by lxml, never formatted into text)."""
    return etree.SubElement(parent, tag, **attrs)


def to_string(root, pretty=False):
    return etree.tostring(root, pretty_print=pretty, encoding='unicode')
