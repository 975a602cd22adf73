# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Domain XML for an imported VM: an exported definition re-targeted, or one made from scratch.

Edits are made on the parsed tree (lxml), so everything the definition holds that an import does
not need to change survives.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._domain_xml import DomainXML

try:
    from lxml import etree
except ImportError:
    pass  # reported by _snapshot_xml's HAS_LXML


def _set_text(root, tag, text):
    node = root.find(tag)
    if node is None:
        node = etree.Element(tag)
        root.insert(1 if root.find('name') is not None else 0, node)
    node.text = text


def retarget(root, name, uuid, disks, keep_macs=False, network=None, network_kind='network'):
    """Edit the <domain> element `root` in place for the new VM `name`.

    disks: {target: image path}; disks of device "disk" not in it are dropped (they were not
    exported). MACs go (libvirt makes new ones) unless keep_macs: a RAM state restored under
    this definition holds the old ones. `network` re-attaches every NIC.
    """
    _set_text(root, 'name', name)
    if uuid:
        _set_text(root, 'uuid', uuid)
    else:
        for node in root.findall('uuid'):
            root.remove(node)
    dom = DomainXML(root)
    for disk in dom.disks:
        if disk.device not in (None, 'disk'):
            continue
        if disk.target in disks:
            disk.point_at(disks[disk.target])
        else:
            disk.root.getparent().remove(disk.root)
    for iface in root.findall('devices/interface'):
        if not keep_macs:
            for mac in iface.findall('mac'):
                iface.remove(mac)
        for tag in ('target', 'alias'):
            for node in iface.findall(tag):
                iface.remove(node)
        if network:
            for node in iface.findall('source'):
                iface.remove(node)
            iface.set('type', network_kind)
            src = etree.Element('source', **{network_kind: network})
            iface.insert(0 if iface.find('mac') is None else 1, src)
    return root


def generic(name, vcpus, memory_mib, disks, nics, network=None, network_kind='network'):
    """A plain x86_64 definition: virtio disks (in the order given), virtio NICs, a serial console."""
    dom = etree.Element('domain', type='kvm' if os.path.exists('/dev/kvm') else 'qemu')
    etree.SubElement(dom, 'name').text = name
    etree.SubElement(dom, 'memory', unit='MiB').text = str(int(memory_mib))
    etree.SubElement(dom, 'vcpu').text = str(int(vcpus))
    os_ = etree.SubElement(dom, 'os')
    etree.SubElement(os_, 'type', arch='x86_64').text = 'hvm'
    etree.SubElement(os_, 'boot', dev='hd')
    features = etree.SubElement(dom, 'features')
    etree.SubElement(features, 'acpi')
    devices = etree.SubElement(dom, 'devices')
    for target, path in disks:
        disk = etree.SubElement(devices, 'disk', type='file', device='disk')
        etree.SubElement(disk, 'driver', name='qemu', type='qcow2')
        etree.SubElement(disk, 'source', file=path)
        etree.SubElement(disk, 'target', dev=target, bus='virtio')
    for nic in nics:
        net = network or 'default'      # the exporter's network names mean nothing here
        kind = network_kind if network else 'network'
        iface = etree.SubElement(devices, 'interface', type=kind)
        etree.SubElement(iface, 'source', **{kind: net})
        etree.SubElement(iface, 'model', type='virtio')
    serial = etree.SubElement(devices, 'serial', type='pty')
    etree.SubElement(serial, 'target', port='0')
    return dom
