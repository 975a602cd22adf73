# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Thin adapter over libvirt-python.

Everything the collection asks of libvirt goes through here, so VIR_* constants and libvirt's
error codes are mapped in one place and the rest of the core sees small Python objects and
typed errors (see _errors.py).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import traceback

from ansible_collections.nova.snapshots.plugins.module_utils._errors import (
    ConnectionFailed,
    DomainNotFound,
    LibvirtFailed,
    SnapshotNotFound,
)

try:
    import libvirt
except ImportError:
    HAS_LIBVIRT = False
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_LIBVIRT = True
    LIBVIRT_IMPORT_ERROR = None
    # libvirt-python prints every error to stderr by default; we report them ourselves.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


# libvirt's virDomainState values, named as `virsh domstate` names them.
_DOMAIN_STATES = {
    0: 'nostate', 1: 'running', 2: 'blocked', 3: 'paused',
    4: 'shutdown', 5: 'shutoff', 6: 'crashed', 7: 'pmsuspended',
}


class Hypervisor(object):
    """One libvirt connection, opened on first use."""

    def __init__(self, uri):
        self.uri = uri
        self._conn = None

    @property
    def conn(self):
        if self._conn is None:
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as e:
                raise ConnectionFailed(self.uri, e.get_error_message())
        return self._conn

    def domain(self, name):
        try:
            return Domain(self, self.conn.lookupByName(name))
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise DomainNotFound(name, self.uri)
            raise LibvirtFailed("looking up domain '%s'" % name, e.get_error_message())

    def domain_names(self):
        return sorted(d.name() for d in self.conn.listAllDomains())

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class Domain(object):
    """A libvirt domain; results come back as strings and lists, never raw libvirt objects."""

    def __init__(self, hypervisor, dom):
        self.hypervisor = hypervisor
        self._dom = dom
        self.name = dom.name()

    @property
    def state(self):
        return _DOMAIN_STATES.get(self._dom.state()[0], 'nostate')

    def xml(self, inactive=False):
        return self._dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0)

    def snapshot_xmls(self):
        """[(name, xml)] for every snapshot libvirt knows, in libvirt's order."""
        return [(s.getName(), s.getXMLDesc(0)) for s in self._dom.listAllSnapshots(0)]

    def current_snapshot_name(self):
        try:
            if not self._dom.hasCurrentSnapshot(0):
                return None
            return self._dom.snapshotCurrent(0).getName()
        except libvirt.libvirtError as e:
            raise LibvirtFailed("reading the current snapshot of '%s'" % self.name, e.get_error_message())

    def snapshot_xml(self, name):
        try:
            return self._dom.snapshotLookupByName(name, 0).getXMLDesc(0)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                raise SnapshotNotFound(self.name, name)
            raise LibvirtFailed("reading snapshot '%s' of '%s'" % (name, self.name), e.get_error_message())
