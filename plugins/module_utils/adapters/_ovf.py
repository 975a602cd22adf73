# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""OVF 1.x envelopes (DMTF DSP0243), built and read with lxml.

What is written is what VMware's own exports hold: References, DiskSection, NetworkSection and one
VirtualSystem whose VirtualHardwareSection lists CPUs, memory, a SCSI controller, the disks on it and
the NICs (RASD elements in schema order). The libvirt definition rides along in an extension section
marked ovf:required="false" (readers that do not know it skip it), so an import here gets the exact
configuration back, and any other OVF is imported from its hardware section alone.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._snapshot_xml import parse_xml
from ansible_collections.nova.snapshots.plugins.module_utils.model._bundle import BundleInvalid

try:
    from lxml import etree
except ImportError:
    pass  # reported by _snapshot_xml's HAS_LXML

OVF = 'http://schemas.dmtf.org/ovf/envelope/1'
RASD = 'http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData'
VSSD = 'http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData'
VMW = 'http://www.vmware.com/schema/ovf'
NOVA = 'urn:nova-snapshots:ovf:1'
XSI = 'http://www.w3.org/2001/XMLSchema-instance'
NSMAP = {'ovf': OVF, 'rasd': RASD, 'vssd': VSSD, 'vmw': VMW, 'nova': NOVA, 'xsi': XSI}
# No default namespace: the libvirt <domain> inside the extension section has none, and lxml would
# not undeclare a default one for it.
STREAM_OPTIMIZED = 'http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized'

# CIM resource types (DSP1041 / CIM_ResourceAllocationSettingData.ResourceType)
CPU, MEMORY, IDE, SCSI, ETHERNET, DISK, SATA = 3, 4, 5, 6, 10, 17, 20
NIC_MODELS = {'virtio': 'VmxNet3', 'e1000': 'E1000', 'e1000e': 'E1000e', 'rtl8139': 'E1000', 'vmxnet3': 'VmxNet3'}
# RASD child elements must appear in this (alphabetical, schema) order.
RASD_ORDER = ('Address', 'AddressOnParent', 'AllocationUnits', 'AutomaticAllocation', 'Connection', 'Description',
              'ElementName', 'HostResource', 'InstanceID', 'Parent', 'ResourceSubType', 'ResourceType',
              'VirtualQuantity')


def _q(ns, tag):
    return '{%s}%s' % (ns, tag)


def _sub(parent, ns, tag, text=None, **attrs):
    node = etree.SubElement(parent, _q(ns, tag))
    for key, value in attrs.items():
        node.set(_q(OVF, key), str(value))
    if text is not None:
        node.text = str(text)
    return node


def _item(hw, **fields):
    item = _sub(hw, OVF, 'Item')
    for key in RASD_ORDER:
        if key in fields and fields[key] is not None:
            _sub(item, RASD, key, fields[key])
    return item


def domain_facts(dom_root):
    """CPU count, memory, NICs of a libvirt <domain> element (disks come from the export itself)."""
    vcpus = int(dom_root.findtext('vcpu') or 1)
    mem = dom_root.find('memory')
    unit = (mem.get('unit') or 'KiB').lower() if mem is not None else 'kib'
    scale = {'b': 1, 'bytes': 1, 'k': 1024, 'kib': 1024, 'm': 1024 ** 2, 'mib': 1024 ** 2, 'g': 1024 ** 3,
             'gib': 1024 ** 3}.get(unit, 1024)
    memory_mib = (int(mem.text) * scale // 2 ** 20) if mem is not None else 1024
    nics = []
    for iface in dom_root.findall('devices/interface'):
        src = iface.find('source')
        network = None
        if src is not None:
            network = src.get('network') or src.get('bridge') or src.get('dev')
        mac = iface.find('mac')
        model = iface.find('model')
        nics.append(dict(network=network or 'VM Network', mac=mac.get('address') if mac is not None else None,
                         model=model.get('type') if model is not None else 'virtio'))
    return dict(vcpus=vcpus, memory_mib=max(memory_mib, 1), nics=nics)


def build(name, facts, disks, hardware_version, domain_xml=None):
    """The .ovf text. disks: [{file, size (bytes of the VMDK), capacity (virtual bytes), device}]."""
    env = etree.Element(_q(OVF, 'Envelope'), nsmap=NSMAP)
    env.set(_q(VMW, 'buildId'), 'nova.snapshots')
    refs = _sub(env, OVF, 'References')
    for i, d in enumerate(disks, 1):
        _sub(refs, OVF, 'File', href=d['file'], id='file%d' % i, size=d['size'])
    ds = _sub(env, OVF, 'DiskSection')
    _sub(ds, OVF, 'Info', 'Virtual disk information')
    for i, d in enumerate(disks, 1):
        _sub(ds, OVF, 'Disk', capacity=d['capacity'], capacityAllocationUnits='byte', diskId='vmdisk%d' % i,
             fileRef='file%d' % i, format=STREAM_OPTIMIZED)
    networks = []
    for nic in facts['nics']:
        if nic['network'] not in networks:
            networks.append(nic['network'])
    if networks:
        ns = _sub(env, OVF, 'NetworkSection')
        _sub(ns, OVF, 'Info', 'The list of logical networks')
        for net in networks:
            n = _sub(ns, OVF, 'Network', name=net)
            _sub(n, OVF, 'Description', 'The %s network' % net)
    vs = _sub(env, OVF, 'VirtualSystem', id=name)
    _sub(vs, OVF, 'Info', 'A virtual machine')
    _sub(vs, OVF, 'Name', name)
    os_sec = _sub(vs, OVF, 'OperatingSystemSection', id=101)
    os_sec.set(_q(VMW, 'osType'), 'otherLinux64Guest')
    _sub(os_sec, OVF, 'Info', 'The kind of installed guest operating system')
    hw = _sub(vs, OVF, 'VirtualHardwareSection')
    _sub(hw, OVF, 'Info', 'Virtual hardware requirements')
    system = _sub(hw, OVF, 'System')
    for key, value in (('ElementName', 'Virtual Hardware Family'), ('InstanceID', 0),
                       ('VirtualSystemIdentifier', name), ('VirtualSystemType', hardware_version)):
        _sub(system, VSSD, key, value)
    _item(hw, AllocationUnits='hertz * 10^6', Description='Number of Virtual CPUs',
          ElementName='%d virtual CPU(s)' % facts['vcpus'], InstanceID=1, ResourceType=CPU,
          VirtualQuantity=facts['vcpus'])
    _item(hw, AllocationUnits='byte * 2^20', Description='Memory Size',
          ElementName='%dMB of memory' % facts['memory_mib'], InstanceID=2, ResourceType=MEMORY,
          VirtualQuantity=facts['memory_mib'])
    _item(hw, Address=0, Description='SCSI Controller', ElementName='SCSI Controller 0', InstanceID=3,
          ResourceSubType='lsilogic', ResourceType=SCSI)
    instance = 4
    for i, d in enumerate(disks, 1):
        _item(hw, AddressOnParent=i - 1, ElementName='Hard Disk %d' % i, HostResource='ovf:/disk/vmdisk%d' % i,
              InstanceID=instance, Parent=3, ResourceType=DISK)
        instance += 1
    for i, nic in enumerate(facts['nics'], 1):
        _item(hw, Address=nic['mac'], AddressOnParent=6 + i, AutomaticAllocation='true', Connection=nic['network'],
              Description='%s ethernet adapter on "%s"' % (NIC_MODELS.get(nic['model'], 'E1000'), nic['network']),
              ElementName='Network adapter %d' % i, InstanceID=instance,
              ResourceSubType=NIC_MODELS.get(nic['model'], 'E1000'), ResourceType=ETHERNET)
        instance += 1
    if domain_xml is not None:
        ext = etree.SubElement(vs, _q(NOVA, 'LibvirtDomainSection'))
        ext.set(_q(OVF, 'required'), 'false')
        _sub(ext, OVF, 'Info', 'The libvirt domain definition this machine was exported from')
        ext.append(parse_xml(domain_xml))
    return etree.tostring(env, xml_declaration=True, encoding='UTF-8', pretty_print=True).decode('utf-8')


def parse(text, where):
    """The parts of an OVF an import needs: name, vcpus, memory_mib, disks [{file, capacity}], nics,
    and the libvirt <domain> when the extension section carries one."""
    try:
        env = parse_xml(text)
    except etree.XMLSyntaxError as e:
        raise BundleInvalid('%s: the OVF descriptor is not valid XML (%s)' % (where, e))
    if env.tag != _q(OVF, 'Envelope'):
        raise BundleInvalid('%s: the descriptor is not an OVF 1.x envelope (root %s)' % (where, env.tag))
    ns = {'ovf': OVF, 'rasd': RASD, 'nova': NOVA}
    files = dict((f.get(_q(OVF, 'id')), f.get(_q(OVF, 'href'))) for f in env.findall('ovf:References/ovf:File', ns))
    disks_by_id = {}
    for d in env.findall('ovf:DiskSection/ovf:Disk', ns):
        unit = d.get(_q(OVF, 'capacityAllocationUnits')) or 'byte'
        scale = {'byte': 1, 'byte * 2^10': 2 ** 10, 'byte * 2^20': 2 ** 20, 'byte * 2^30': 2 ** 30}.get(unit, 1)
        disks_by_id[d.get(_q(OVF, 'diskId'))] = dict(file=files.get(d.get(_q(OVF, 'fileRef'))),
                                                     capacity=int(d.get(_q(OVF, 'capacity')) or 0) * scale)
    vs = env.find('ovf:VirtualSystem', ns)
    if vs is None:
        raise BundleInvalid('%s: the OVF descriptor has no VirtualSystem' % where)
    out = dict(name=vs.findtext('ovf:Name', namespaces=ns) or vs.get(_q(OVF, 'id')), vcpus=1, memory_mib=1024,
               disks=[], nics=[], domain=None)
    for item in vs.findall('ovf:VirtualHardwareSection/ovf:Item', ns):
        rtype = int(item.findtext('rasd:ResourceType', namespaces=ns) or 0)
        qty = item.findtext('rasd:VirtualQuantity', namespaces=ns)
        if rtype == CPU and qty:
            out['vcpus'] = int(qty)
        elif rtype == MEMORY and qty:
            units = (item.findtext('rasd:AllocationUnits', namespaces=ns) or 'byte * 2^20').replace(' ', '')
            shift = {'byte*2^20': 0, 'MegaBytes': 0, 'byte*2^30': 10, 'GigaBytes': 10, 'byte*2^10': -10}.get(units, 0)
            out['memory_mib'] = int(int(qty) * 2 ** shift) if shift >= 0 else int(qty) // 1024
        elif rtype == DISK:
            ref = (item.findtext('rasd:HostResource', namespaces=ns) or '').split('/')[-1]
            if ref not in disks_by_id or not disks_by_id[ref]['file']:
                raise BundleInvalid('%s: disk %s of the hardware section has no file in the OVF' % (where, ref))
            out['disks'].append(disks_by_id[ref])
        elif rtype == ETHERNET:
            out['nics'].append(dict(network=item.findtext('rasd:Connection', namespaces=ns),
                                    mac=item.findtext('rasd:Address', namespaces=ns),
                                    model=item.findtext('rasd:ResourceSubType', namespaces=ns)))
    dom = vs.find('nova:LibvirtDomainSection/domain', ns)
    if dom is not None:
        out['domain'] = etree.tostring(dom, encoding='unicode')
    return out
