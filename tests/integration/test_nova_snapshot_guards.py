# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad input gets a clear error and changes nothing; check mode, diff, locking, quiesce."""

from __future__ import annotations

import fcntl
import os
import subprocess

import pytest

from testbed import guest_task


MODULE = 'nova.snapshots.nova_snapshot'


def run(guest, check=False, diff=False, **args):
    return guest_task(MODULE, guest, check=check, diff=diff, **args)


def libvirt_names(guest):
    return sorted(s.getName() for s in guest.dom.listAllSnapshots())


# a refused attempt is recorded in the audit trail (docs/audit.md); nothing else may appear
AUDIT_FILES = ('audit.log', '.audit.lock')


def files_under(path):
    return sorted(os.path.join(d, f) for d, _dirs, fs in os.walk(path) for f in fs
                  if f not in AUDIT_FILES) if os.path.exists(path) else []


@pytest.fixture(scope='module')
def shared_guest(conn):
    """One running guest for the many refusals below (each asserts nothing changed on it)."""
    import testbed
    guest = testbed.Guest(conn, disks=2, agent=False)
    guest.start()
    yield guest
    guest.cleanup()


@pytest.mark.parametrize('name,problem', [
    ('a/b', "contains '/'"),
    ('.hidden', "starts with '.'"),
    ('x<y', 'contains an XML metacharacter'),
    ("it's", 'contains an XML metacharacter'),
    ('a&b', 'contains an XML metacharacter'),
    ('n' * 256, 'is longer than 255 bytes'),
    ('tab\there', 'contains a control character'),
])
def test_bad_names_are_refused(shared_guest, name, problem):
    before = files_under(shared_guest.storage_dir)
    result = run(shared_guest, name=name)
    assert result['failed'] is True
    assert result['msg'].startswith('invalid snapshot name') and problem in result['msg'], result['msg']
    assert libvirt_names(shared_guest) == [] and files_under(shared_guest.storage_dir) == before


def test_unknown_domain_and_snapshot(shared_guest):
    result = run(shared_guest, domain='novatest-missing', name='x')
    assert result['msg'] == "domain 'novatest-missing' does not exist on qemu:///system"
    result = run(shared_guest, name='never-made', state='reverted')
    assert result['msg'] == "domain '%s' has no snapshot named 'never-made'" % shared_guest.name
    result = run(shared_guest, name='never-made', state='absent')
    assert result['changed'] is False and result['snapshot'] is None


def test_disk_the_vm_lacks(shared_guest):
    result = run(shared_guest, name='d', disks=['vdz'])
    assert result['msg'] == "domain '%s' has no disk vdz; its disks are vda, vdb" % shared_guest.name
    assert libvirt_names(shared_guest) == []


def test_quiesce_without_agent(shared_guest):
    result = run(shared_guest, name='q', snapshot_type='disk_only', quiesce=True)
    assert result['failed'] is True
    assert result['msg'].startswith("quiesce needs the guest agent, but the agent of domain '%s' does not answer"
                                    % shared_guest.name), result['msg']
    assert libvirt_names(shared_guest) == []


def test_not_enough_space_for_the_memory_file(shared_guest, tmp_path):
    small = '/var/lib/nova-test/small-%s' % shared_guest.name
    os.makedirs(small)
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', small], check=True)
    try:
        result = run(shared_guest, name='m', snapshot_type='memory', storage_dir=small)
        assert result['failed'] is True
        assert result['msg'].startswith('not enough free space in %s/%s: ' % (small, shared_guest.name)), result['msg']
        assert 'nothing was changed' in result['msg']
        assert libvirt_names(shared_guest) == [] and files_under(small) == []
    finally:
        subprocess.run(['umount', small], check=True)
        os.rmdir(small)


def test_check_mode_diff_and_same_name_with_other_settings(shared_guest):
    planned = run(shared_guest, check=True, diff=True, name='cm', snapshot_type='disk_only', tags=['t'])
    assert planned['changed'] is True and planned['snapshot'] is None
    assert planned['diff'] == {'before': {}, 'after': {'name': 'cm', 'snapshot_type': 'disk_only', 'disks': ['vda', 'vdb'],
                                                       'memory': False, 'description': None, 'tags': ['t'],
                                                       'category': None, 'encrypted': False, 'memory_compression': None}}
    assert planned['actions'] == ['take disk_only snapshot cm of %s (disks vda, vdb)' % shared_guest.name]
    assert libvirt_names(shared_guest) == []

    made = run(shared_guest, diff=True, name='cm', snapshot_type='disk_only', tags=['t'])
    assert made['changed'] is True and libvirt_names(shared_guest) == ['cm']
    assert made['diff']['after']['name'] == 'cm'

    clash = run(shared_guest, name='cm', snapshot_type='memory', tags=['other'])
    assert clash['failed'] is True
    assert clash['msg'] == ("snapshot 'cm' of domain '%s' already exists with different settings: "
                            "snapshot_type is 'disk_only' (asked 'memory'); tags is ['t'] (asked ['other'])"
                            % shared_guest.name)

    would_delete = run(shared_guest, check=True, diff=True, name='cm', state='absent')
    assert would_delete['changed'] is True and would_delete['diff']['after'] == {}
    assert would_delete['diff']['before']['name'] == 'cm' and libvirt_names(shared_guest) == ['cm']

    would_revert = run(shared_guest, check=True, diff=True, name='cm', state='reverted', after='running')
    assert would_revert['changed'] is True and would_revert['diff']['after'] == {'current': 'cm', 'state': 'running'}
    assert shared_guest.state == 'running'

    # internal and external do not mix in one history
    mixed = run(shared_guest, name='int', snapshot_type='internal')
    assert mixed['failed'] is True and 'does not mix internal and external snapshots' in mixed['msg']

    assert run(shared_guest, name='cm', state='absent')['changed'] is True
    assert libvirt_names(shared_guest) == []


def test_a_second_operation_waits_for_the_lock_then_fails_clearly(shared_guest):
    store = os.path.join(shared_guest.storage_dir, shared_guest.name)
    os.makedirs(store, exist_ok=True)
    with open(os.path.join(store, '.lock'), 'a') as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = run(shared_guest, name='locked', snapshot_type='disk_only', lock_timeout=2)
    assert result['failed'] is True
    assert result['msg'] == ("another operation on domain '%s' holds its lock (%s/.lock); gave up after lock_timeout=2s"
                             % (shared_guest.name, store))
    assert libvirt_names(shared_guest) == []


def test_quiesced_snapshot_with_the_agent(make_guest):
    guest = make_guest(disks=1, agent=True)
    guest.wait_agent()
    result = run(guest, name='frozen', snapshot_type='disk_only', quiesce=True)
    assert not result.get('failed'), result['msg']
    assert result['snapshot']['quiesced'] is True
    refused = run(guest, name='frozen-int', snapshot_type='internal', quiesce=True)
    assert refused['msg'] == 'quiesce works with external, memory and disk_only snapshots; libvirt cannot quiesce an internal snapshot'


def test_several_disks_all_or_none(make_guest):
    """When libvirt cannot make one disk's overlay, no disk gets one: the VM runs on as it was.

    The failure is injected for real: a directory sits where vdb's overlay must go. The core is
    driven directly here only to know the snapshot's id (and so that path) before it is taken.
    """
    import sys
    import libvirt as lv
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'bench'))
    from common import manager
    from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NovaError
    from ansible_collections.nova.snapshots.plugins.module_utils.operations._create import create

    guest = make_guest(disks=2)
    write_markers_here(guest)
    m = manager(guest)
    tree = m.store.load()
    dom = m.domain_xml()
    snap_id = 'atomic-test'
    m.store.make_dir(m.store.snapshot_dir(snap_id))
    os.mkdir(m.store.overlay_path(snap_id, 'vdb'))
    with pytest.raises(NovaError) as e:
        create(m, tree, snap_id, 'half', 'disk_only', dom, {'vda', 'vdb'}, False, None, [], None, False)
    assert 'vdb' in e.value.msg
    m.hypervisor.close()
    assert libvirt_names(guest) == []
    assert not os.path.exists(m.store.overlay_path(snap_id, 'vda'))
    live = guest.dom.XMLDesc(0)
    assert guest.disks['vda'] in live and guest.disks['vdb'] in live and 'disk_vda' not in live
    assert guest.read_marker('vda', 4096) == 'atomic-vda' and guest.read_marker('vdb', 4096) == 'atomic-vdb'
    assert guest.dom.state()[0] == lv.VIR_DOMAIN_RUNNING


def write_markers_here(guest):
    guest.write_marker('vda', 4096, 'atomic-vda')
    guest.write_marker('vdb', 4096, 'atomic-vdb')
