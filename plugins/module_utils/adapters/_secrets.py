# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""libvirt secrets holding the passphrase of a domain's LUKS-encrypted overlays.

A secret is private (libvirt never shows its value) and ephemeral (libvirt keeps it in memory only,
never on disk); every task given the key file defines it again when it is missing (after a
libvirtd restart). Its UUID is derived from the domain's, so each domain has its own.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import uuid

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._xml import new_root, sub_element, to_string
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import LibvirtFailed

try:
    import libvirt
except ImportError:
    pass    # reported by _common.check_requirements

_NAMESPACE = uuid.UUID('5b0b2a5e-6c1d-4f8e-9a57-6e6f76612d6b')


def secret_uuid(domain_uuid):
    """The UUID of the secret of the domain with UUID `domain_uuid` (the same every time)."""
    return str(uuid.uuid5(_NAMESPACE, 'nova.snapshots LUKS %s' % domain_uuid))


class Secrets(object):
    """The secrets of one libvirt connection (a Hypervisor's)."""

    def __init__(self, hypervisor):
        self.hypervisor = hypervisor

    def _lookup(self, uid):
        try:
            return self.hypervisor.conn.secretLookupByUUIDString(uid)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_SECRET:
                return None
            raise LibvirtFailed('looking up libvirt secret %s' % uid, e.get_error_message())

    def exists(self, uid):
        return self._lookup(uid) is not None

    def ensure(self, uid, value, description):
        """Define secret `uid` (private, ephemeral) with `value` unless it exists; set its value."""
        secret = self._lookup(uid)
        try:
            if secret is None:
                root = new_root('secret')
                root.set('ephemeral', 'yes')
                root.set('private', 'yes')
                sub_element(root, 'uuid').text = uid
                sub_element(root, 'description').text = description
                secret = self.hypervisor.conn.secretDefineXML(to_string(root))
            secret.setValue(value)
        except libvirt.libvirtError as e:
            raise LibvirtFailed('defining libvirt secret %s' % uid, e.get_error_message())

    def remove(self, uid):
        secret = self._lookup(uid)
        if secret is not None:
            try:
                secret.undefine()
            except libvirt.libvirtError as e:
                raise LibvirtFailed('removing libvirt secret %s' % uid, e.get_error_message())
