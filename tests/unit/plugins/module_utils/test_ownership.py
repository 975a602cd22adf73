# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store's owner record: a VM migrated between hypervisors is refused, not silently split."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._store import Store
from ansible_collections.nova.snapshots.plugins.module_utils.model._tree import Tree
from ansible_collections.nova.snapshots.plugins.module_utils.operations import _ownership
from ansible_collections.nova.snapshots.plugins.module_utils.operations._ownership import ForeignStore, check_ownership


class DomainXMLText:
    """What check_ownership reads of a domain: its UUID and its inactive XML (libvirt's text)."""

    def __init__(self, uuid, disk):
        self.uuid = uuid
        self.text = ("<domain><name>web</name><uuid>%s</uuid><devices><disk type='file' device='disk'>"
                     "<driver name='qemu' type='qcow2'/><source file='%s'/><target dev='vda'/></disk>"
                     "</devices></domain>" % (uuid, disk))

    def xml(self, inactive=False):
        assert inactive
        return self.text


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """set(machine_id): this process runs on that machine."""
    path = tmp_path / 'machine-id'

    def set_id(value):
        path.write_text(value + '\n')
    monkeypatch.setattr(_ownership, 'MACHINE_ID_FILES', (str(path),))
    set_id('aaaa')
    return set_id


def test_first_write_claims_an_existing_store_then_another_machine_is_refused(tmp_path, machine):
    store = Store(str(tmp_path / 'store'), 'web')
    dom = DomainXMLText('u-1', '/images/web.qcow2')
    check_ownership(dom, store, write=True)                         # no store yet: nothing recorded
    assert not os.path.exists(os.path.join(store.root, 'owner.json'))
    store.save(Tree('web'))
    check_ownership(dom, store, write=False)                        # read-only: still nothing written
    assert not os.path.exists(os.path.join(store.root, 'owner.json'))
    check_ownership(dom, store, write=True)
    record = json.load(open(os.path.join(store.root, 'owner.json')))
    assert (record['machine'], record['domain'], record['domain_uuid']) == ('aaaa', 'web', 'u-1')
    check_ownership(dom, store, write=True)                         # the owner: fine, again and again

    machine('bbbb')                                                 # the store came along to another machine
    with pytest.raises(ForeignStore) as e:
        check_ownership(dom, store, write=True)
    assert 'was written on another hypervisor' in e.value.msg and 'machine-id aaaa' in e.value.msg
    assert 'take the store over here by removing %s/owner.json' % store.root in e.value.msg
    os.unlink(os.path.join(store.root, 'owner.json'))               # taken over
    check_ownership(dom, store, write=True)
    assert json.load(open(os.path.join(store.root, 'owner.json')))['machine'] == 'bbbb'


def test_another_vm_of_the_same_name_is_refused(tmp_path, machine):
    store = Store(str(tmp_path / 'store'), 'web')
    store.save(Tree('web'))
    check_ownership(DomainXMLText('u-1', '/images/web.qcow2'), store, write=True)
    with pytest.raises(ForeignStore) as e:
        check_ownership(DomainXMLText('u-2', '/images/web.qcow2'), store, write=True)
    assert e.value.msg.startswith("domain 'web' (uuid u-2) is not the VM its snapshot store")


def test_overlays_of_a_store_that_is_not_here_are_refused(tmp_path, machine):
    store = Store(str(tmp_path / 'store'), 'web')
    overlay = os.path.join(store.root, 'snapshots', '20261125T000000-abcdef', 'disk_vda.qcow2')
    with pytest.raises(ForeignStore) as e:
        check_ownership(DomainXMLText('u-1', overlay), store, write=True)
    assert e.value.msg.startswith("domain 'web': disk vda is %s, an overlay made by a nova.snapshots store" % overlay)
    assert not os.path.exists(store.root)                           # refused: nothing written
