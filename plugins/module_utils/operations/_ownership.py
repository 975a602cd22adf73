# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Which hypervisor a domain's store belongs to: never two stores claiming one VM.

`<storage_dir>/<vm>/owner.json` records the domain's UUID and the machine the store was written on
(its /etc/machine-id and host name). A VM migrated to another hypervisor is refused there, with a
message saying what happened and what to do, when
- its store came along (copied with the disks) and still names the old machine: both machines
  would claim its snapshots; or
- its store did not come along but its disks are overlays a store made (under
  `<storage_dir>/<vm>/`): its snapshot history is on the other machine; or
- the store was made for another domain of the same name (another UUID).
A store made before owner records existed is claimed by the first run that writes.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import socket

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._domain_xml import DomainXML
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import replace_file
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused

OWNER_FILE = 'owner.json'
MACHINE_ID_FILES = ('/etc/machine-id', '/var/lib/dbus/machine-id')


class ForeignStore(Refused):
    """The domain's store or disks belong to another hypervisor (a migrated VM)."""


def machine_identity():
    """This machine's id: /etc/machine-id, else the host name."""
    for path in MACHINE_ID_FILES:
        try:
            with open(path) as f:
                value = f.read().strip()
        except (IOError, OSError):
            continue
        if value:
            return value
    return socket.gethostname()


def owner_path(store):
    return os.path.join(store.root, OWNER_FILE)


def read_owner(store):
    try:
        with open(owner_path(store)) as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return None


def check_ownership(domain, store, write):
    """Refuse a store or disks of another hypervisor; record the owner when `write` and unrecorded."""
    dom = DomainXML(domain.xml(inactive=True))
    uuid = domain.uuid
    here = dict(machine=machine_identity(), host=socket.gethostname())
    record = read_owner(store)
    if record is not None:
        if record.get('machine') != here['machine']:
            raise ForeignStore(
                "domain '%s': its snapshot store %s was written on another hypervisor (%s, machine-id %s) and "
                "came here with the VM; this is %s (machine-id %s). Refusing to use it, so that two hypervisors "
                "never both claim the VM's snapshots. Once the VM and its store are gone from %s, take the store "
                "over here by removing %s."
                % (store.vm_name, store.root, record.get('host'), record.get('machine'), here['host'],
                   here['machine'], record.get('host'), owner_path(store)),
                domain=store.vm_name, owner=record, here=here)
        if uuid and record.get('domain_uuid') and record['domain_uuid'] != uuid:
            raise ForeignStore(
                "domain '%s' (uuid %s) is not the VM its snapshot store %s was made for (uuid %s). Refusing to "
                "use it: move that directory away (or remove %s if this is the same VM, redefined)."
                % (store.vm_name, uuid, store.root, record['domain_uuid'], owner_path(store)),
                domain=store.vm_name, owner=record, domain_uuid=uuid)
        return
    if not os.path.exists(store.tree_path):
        prefix = os.path.realpath(store.root) + os.sep
        foreign = [(d.target, d.source_file) for d in dom.disks
                   if d.source_file and os.path.realpath(d.source_file).startswith(prefix)]
        if foreign:
            target, path = foreign[0]
            raise ForeignStore(
                "domain '%s': disk %s is %s, an overlay made by a nova.snapshots store, but this hypervisor's "
                "store has no record of it (no %s): the VM was moved here from another hypervisor without its "
                "snapshot history. Refusing to snapshot on top of layers nothing here knows. Bring the history "
                "along (copy %s from the old hypervisor and remove its %s here), or flatten the disk into a "
                "standalone image (qemu-img convert) and point the VM at it."
                % (store.vm_name, target, path, store.tree_path, store.root, OWNER_FILE),
                domain=store.vm_name, disk=target, path=path)
    if write and os.path.isdir(store.root):
        replace_file(owner_path(store), json.dumps(dict(here, domain=store.vm_name, domain_uuid=uuid),
                                                   sort_keys=True, indent=1) + '\n', mode=0o600)
