# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""What an import asks of libvirt beyond the domain adapter: pools, networks, replacing a domain.

Thin, like _libvirt.py: libvirt errors become NovaErrors that name the object.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._snapshot_xml import parse_xml
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import LibvirtFailed, NovaError

try:
    import libvirt
except ImportError:
    pass  # reported by _libvirt's HAS_LIBVIRT

FILE_POOLS = ('dir', 'fs', 'netfs')


class Pool(object):
    def __init__(self, hypervisor, name):
        try:
            self._pool = hypervisor.conn.storagePoolLookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise NovaError("storage pool '%s' does not exist on %s" % (name, hypervisor.uri), storage_pool=name)
            raise LibvirtFailed("looking up storage pool '%s'" % name, e.get_error_message())
        self.name = name
        root = parse_xml(self._pool.XMLDesc(0))
        self.type = root.get('type')
        self.path = root.findtext('target/path')
        if self.type not in FILE_POOLS or not self.path:
            raise NovaError("storage pool '%s' is of type %s; imports go into directory pools (%s)"
                            % (name, self.type, ', '.join(FILE_POOLS)), storage_pool=name)
        if not self._pool.isActive():
            raise NovaError("storage pool '%s' is not active; start it first (virsh pool-start %s)" % (name, name),
                            storage_pool=name)

    def refresh(self):
        try:
            self._pool.refresh(0)
        except libvirt.libvirtError as e:
            raise LibvirtFailed("refreshing storage pool '%s'" % self.name, e.get_error_message())

    def volume_name(self, path):
        try:
            return self._pool.storageVolLookupByName(path.rsplit('/', 1)[-1]).name()
        except libvirt.libvirtError:
            return None


def network_kind(hypervisor, name):
    """'network' when `name` is a libvirt network, else 'bridge' (a host bridge of that name)."""
    try:
        hypervisor.conn.networkLookupByName(name)
        return 'network'
    except libvirt.libvirtError:
        return 'bridge'


def domain_exists(hypervisor, name):
    try:
        hypervisor.conn.lookupByName(name)
        return True
    except libvirt.libvirtError:
        return False


def remove_domain(hypervisor, name):
    """Stop and undefine domain `name` (its snapshot metadata and managed save too); its disks stay."""
    try:
        dom = hypervisor.conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    try:
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                          | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    except libvirt.libvirtError as e:
        raise LibvirtFailed("removing domain '%s'" % name, e.get_error_message())


def restore(hypervisor, path):
    try:
        hypervisor.conn.restoreFlags(path, None, libvirt.VIR_DOMAIN_SAVE_RUNNING)
    except libvirt.libvirtError as e:
        raise LibvirtFailed('restoring RAM from %s' % path, e.get_error_message())
