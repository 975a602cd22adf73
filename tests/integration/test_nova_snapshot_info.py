# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova_snapshot_info through ansible-playbook against the real libvirtd."""

from __future__ import annotations

import re
import subprocess

from testbed import run_task

MODULE = 'nova.snapshots.nova_snapshot_info'


def virsh(*args):
    subprocess.run(['virsh', '-q', '-c', 'qemu:///system'] + list(args), check=True, capture_output=True)


def test_lists_snapshots_of_a_running_guest(guest):
    virsh('snapshot-create-as', guest.name, 'alpha', '--description', 'first one')
    overlay = guest.dir + '/beta-vda.qcow2'
    virsh('snapshot-create-as', guest.name, 'beta', '--disk-only', '--atomic',
          '--diskspec', 'vda,file=%s' % overlay, '--diskspec', 'vdb,snapshot=no')

    result = run_task(MODULE, {'domain': guest.name})
    assert not result.get('failed'), result
    assert result['changed'] is False
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
    assert {d['device']: d['file'] for d in beta['disks'] if d['snapshot'] == 'external'} == {'vda': overlay}


def test_filter_check_mode_and_shut_off_guest(make_guest):
    guest = make_guest(running=False)
    for name in ('nightly-1', 'nightly-2', 'manual'):
        virsh('snapshot-create-as', guest.name, name)

    result = run_task(MODULE, {'domain': guest.name, 'name': 'nightly-*'}, check=True)
    assert not result.get('failed'), result
    assert [s['name'] for s in result['snapshots']] == ['nightly-1', 'nightly-2']
    assert all(s['vm_state'] == 'shutoff' for s in result['snapshots'])
    assert result['current'] == 'manual'
    assert result['domain_state'] == 'shutoff'


def test_domain_without_snapshots(make_guest):
    guest = make_guest(running=False)
    result = run_task(MODULE, {'domain': guest.name})
    assert not result.get('failed'), result
    assert result['snapshots'] == [] and result['current'] is None


def test_unknown_domain_is_a_clear_error(conn):
    result = run_task(MODULE, {'domain': 'novatest-no-such-domain'})
    assert result['failed'] is True
    assert result['msg'] == "domain 'novatest-no-such-domain' does not exist on qemu:///system"


def test_unreachable_uri_is_a_clear_error():
    uri = 'qemu+unix:///system?socket=/nonexistent/libvirt-sock'
    result = run_task(MODULE, {'domain': 'anything', 'uri': uri})
    assert result['failed'] is True
    assert result['msg'].startswith("cannot connect to libvirt at '%s': " % uri), result['msg']
