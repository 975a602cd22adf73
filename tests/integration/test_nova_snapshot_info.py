# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova_snapshot_info through ansible-playbook against the real libvirtd."""

from __future__ import annotations

import os
import re
import subprocess

from testbed import run_task

MODULE = 'nova.snapshots.nova_snapshot_info'


def virsh(*args):
    subprocess.run(['virsh', '-q', '-c', 'qemu:///system'] + list(args), check=True, capture_output=True)


def test_lists_snapshots_of_a_running_guest(guest, run_module):
    virsh('snapshot-create-as', guest.name, 'alpha', '--description', 'first one')
    guest.write_marker('vda', 4096, 'before-beta')
    overlay = guest.dir + '/beta-vda.qcow2'
    virsh('snapshot-create-as', guest.name, 'beta', '--disk-only', '--atomic',
          '--diskspec', 'vda,file=%s' % overlay, '--diskspec', 'vdb,snapshot=no')

    result = run_module(MODULE, **{'domain': guest.name, 'storage_dir': guest.storage_dir})
    assert not result.get('failed'), result
    assert result['changed'] is False
    assert result['not_adopted'] == {guest.name: ['alpha', 'beta']}
    assert result['domain_state'] == 'running'
    assert result['current'] == 'beta'
    by_name = {s['name']: s for s in result['snapshots']}
    assert [s['name'] for s in result['snapshots']] == ['alpha', 'beta']

    alpha, beta = by_name['alpha'], by_name['beta']
    assert alpha['parent'] is None and beta['parent'] == 'alpha'
    assert alpha['vm_state'] == 'running' and alpha['snapshot_type'] == 'internal'
    assert alpha['description'] == 'first one'
    assert beta['vm_state'] == 'disk-snapshot' and beta['snapshot_type'] == 'disk_only'
    assert (alpha['is_current'], beta['is_current']) == (False, True)
    assert re.match(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$', alpha['created_at'])
    assert alpha['creation_time'] <= beta['creation_time']
    # beta's state of vda is the image virsh froze under its new overlay
    assert [(d['device'], d['file_path']) for d in beta['disk_files']] == [('vda', guest.disks['vda'])]
    assert alpha['origin'] == beta['origin'] == 'adopted'

    # an _info module changes nothing: no store was written, and the same records come back
    assert not os.path.exists(guest.storage_dir) or os.listdir(guest.storage_dir) == []
    again = run_module(MODULE, **{'domain': guest.name, 'storage_dir': guest.storage_dir})
    assert again['not_adopted'] == {guest.name: ['alpha', 'beta']}
    assert [s['id'] for s in again['snapshots']] == [alpha['id'], beta['id']]
    # the next change adopts them (with the ids the report showed), and the collection can revert to virsh's snapshot
    guest.write_marker('vda', 4096, 'after-beta')
    reverted = run_task('nova.snapshots.nova_snapshot', {'domain': guest.name, 'name': 'beta', 'state': 'reverted',
                                                         'after': 'running', 'storage_dir': guest.storage_dir})
    assert not reverted.get('failed'), reverted['msg']
    assert reverted['adopted'] == ['alpha', 'beta']
    guest.wait_ready()
    assert guest.read_marker('vda', 4096) == 'before-beta'
    after = run_module(MODULE, **{'domain': guest.name, 'storage_dir': guest.storage_dir})
    assert after['not_adopted'] == {} and [s['id'] for s in after['snapshots']] == [alpha['id'], beta['id']]


def test_filter_check_mode_and_shut_off_guest(make_guest):
    guest = make_guest(running=False)
    for name in ('nightly-1', 'nightly-2', 'manual'):
        virsh('snapshot-create-as', guest.name, name)

    result = run_task(MODULE, {'domain': guest.name, 'name': 'nightly-*', 'storage_dir': guest.storage_dir}, check=True)
    assert not result.get('failed'), result
    assert [s['name'] for s in result['snapshots']] == ['nightly-1', 'nightly-2']
    assert all(s['vm_state'] == 'shutoff' for s in result['snapshots'])
    assert result['current'] == 'manual'
    assert result['domain_state'] == 'shutoff'
    # check mode lists them but adopts nothing
    assert not os.path.exists(os.path.join(guest.storage_dir, guest.name))


def test_domain_without_snapshots(make_guest, run_module):
    guest = make_guest(running=False)
    result = run_module(MODULE, **{'domain': guest.name, 'storage_dir': guest.storage_dir})
    assert not result.get('failed'), result
    assert result['snapshots'] == [] and result['current'] is None
    assert not os.path.exists(guest.storage_dir)       # nothing to adopt, nothing written


def test_unknown_domain_is_a_clear_error(conn, run_module):
    result = run_module(MODULE, **{'domain': 'novatest-no-such-domain'})
    assert result['failed'] is True
    assert result['msg'] == "domain 'novatest-no-such-domain' does not exist on qemu:///system"


def test_unreachable_uri_is_a_clear_error(run_module):
    uri = 'qemu+unix:///system?socket=/nonexistent/libvirt-sock'
    result = run_module(MODULE, **{'domain': 'anything', 'uri': uri})
    assert result['failed'] is True
    assert result['msg'].startswith("cannot connect to libvirt at '%s': " % uri), result['msg']


def test_filters_details_and_every_domain(make_guest, run_module):
    guest = make_guest(disks=1)
    store = {'storage_dir': guest.storage_dir}
    take = dict(domain=guest.name, **store)
    for name, stype, tags, category in [('a', 'disk_only', ['update', 'security'], 'maintenance'),
                                        ('b', 'disk_only', ['update'], None),
                                        ('c', 'memory', ['security'], 'maintenance')]:
        made = run_task('nova.snapshots.nova_snapshot', dict(take, name=name, snapshot_type=stype, tags=tags,
                                                             category=category))
        assert not made.get('failed'), made['msg']

    def names(**filters):
        result = run_module(MODULE, **dict(take, **filters))
        assert not result.get('failed'), result.get('msg')
        return [s['name'] for s in result['snapshots']]

    assert names() == ['a', 'b', 'c']
    assert names(tags=['update', 'security']) == ['a']
    assert names(tags=['security']) == ['a', 'c']
    assert names(category='maintenance') == ['a', 'c']
    assert names(snapshot_type='memory') == ['c']
    assert names(created_after='2000-01-01') == ['a', 'b', 'c']
    assert names(created_before='2000-01-01T00:00:00Z') == []

    bad = run_module(MODULE, **dict(take, created_after='yesterday-ish'))
    assert bad['failed'] and bad['msg'].startswith("created_after: cannot read 'yesterday-ish' as a time")

    detailed = run_module(MODULE, **dict(take, name='b', details=True))['snapshots'][0]
    chain = detailed['disk_files'][0]['chain']
    # b froze the overlay a created, which sits on the guest's base image
    assert [c['file'] for c in chain][-1] == guest.disks['vda']
    assert len(chain) == 2 and chain[0]['format'] == 'qcow2'

    every = run_module(MODULE, **store)
    assert guest.name in every['domains'] and 'domain_state' not in every
    assert {s['name'] for s in every['snapshots'] if s['vm_name'] == guest.name} == {'a', 'b', 'c'}
