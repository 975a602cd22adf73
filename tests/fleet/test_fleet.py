# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Policies declared in inventory, enforced on a fleet of three hypervisors over ssh in one run:
group_vars for the group, host_vars for one VM's exception; forks and serial; one hypervisor down
and its catch-up. Shut-off guests with disk_only snapshots: no RAM is needed, the disks are real."""

from __future__ import annotations

import json
import os
import shutil
import uuid

import libvirt

import fleetbed
import testbed
from fleetbed import run_job

ENFORCE = 'nova.snapshots.enforce_policy'
TASK = 'Enforce the declared policies'


def at(hour, minute=0):
    return '2026-11-25T%02d:%02d:00Z' % (hour, minute)


def snaps(host, guest, policy):
    """The guest's snapshots in libvirt on its host that the policy made, as '<period>-<HHMM>'."""
    names = host.libvirt_snapshots(guest.name)
    meta = dict((s['name'], s) for s in host.store_meta(guest.name)['snapshots']) if names else {}
    mine = [n for n in names if 'nova-policy:%s' % policy in meta[n]['tags']]
    return sorted(n[len(guest.name) + 1:] for n in mine)


def overlay_window(host, guests):
    """(first, last) modification time of the guests' top overlays on the host: when its run made them."""
    times = [os.stat(host.outside(g.tops()['vda'])).st_mtime for g in guests]
    return min(times), max(times)


def test_inventory_policies_on_the_fleet_forks_serial_host_down_and_catch_up(
        tmp_path, hosts, inventory, make_fleet_guest):
    hv1, hv2, hv3 = hosts
    run = uuid.uuid4().hex[:6]
    webs = dict((h.name, [make_fleet_guest(h, name='novatest-%s-web%d' % (run, i)) for i in (1, 2, 3)])
                for h in hosts)
    db = make_fleet_guest(hv2, name='novatest-%s-db1' % run)
    for guests in webs.values():
        for g in guests:
            g.write_pattern('vda', 1)
    standard = {'name': 'standard', 'domains': ['novatest-%s-*' % run], 'snapshot_type': 'disk_only',
                'schedule': {'hourly': True}, 'retain': {'hourly': 4}, 'naming': '{vm}-{purpose}-{time}'}
    # group_vars: the group's policy; host_vars of hv2: db1 is the exception, daily instead of
    # hourly. The group's policy list is composed with the host's, as Ansible does not merge lists.
    group_vars = {
        'nova_fleet_group_policies': [dict(standard, domains=['novatest-%s-web*' % run])],
        'nova_fleet_host_policies': [],
        'nova_snapshot_policies': '{{ nova_fleet_group_policies + nova_fleet_host_policies }}',
    }
    host_vars = {'hv2': {'nova_fleet_host_policies': [
        {'name': 'db-daily', 'domain': db.name, 'snapshot_type': 'disk_only', 'schedule': {'daily': '02:00'},
         'retain': {'daily': 3}, 'naming': '{vm}-{purpose}-{time}'}]}}
    inv = inventory(group_vars=group_vars, host_vars=host_vars)

    # 10:00, forks=3: every host in one run, the three at once
    job = run_job(tmp_path, ENFORCE, inv, {'nova_enforce_now': at(10)}, forks=3)
    assert job.status == 'successful', job.stdout[-4000:]
    for h in hosts:
        for g in webs[h.name]:
            assert snaps(h, g, 'standard') == ['hourly-1000']
    assert snaps(hv2, db, 'db-daily') == ['daily-1000'] and snaps(hv2, db, 'standard') == []
    # one nova_policy call per host and policy, whatever the number of VMs (3 or 4 here)
    assert job.module_calls('nova_policy') == {'hv1': 1, 'hv2': 2, 'hv3': 1}
    spans = job.intervals(TASK)
    assert sorted(spans) == ['hv1', 'hv2', 'hv3']
    assert max(s for s, e in spans.values()) < min(e for s, e in spans.values()), 'forks=3: the hosts ran at once'
    # the snapshots are real: overlays on each host's own store, the data below them kept
    g = webs['hv3'][0]
    assert g.tops()['vda'].startswith('/var/lib/nova/snapshots/%s/' % g.name)
    g.write_pattern('vda', 2)
    assert g.patterns('vda') == [1, 2]

    # 11:00, forks=1: one host after the other
    job = run_job(tmp_path, ENFORCE, inv, {'nova_enforce_now': at(11)}, forks=1)
    assert job.status == 'successful', job.stdout[-4000:]
    # Measured on the hypervisors, from the overlays each host's run created (one per web VM): the
    # controller's result events are stamped when its main loop gets to them, which under load is
    # after the next host has started, so they cannot show when a host's work ended.
    spans = sorted(overlay_window(h, webs[h.name]) for h in hosts)
    assert all(spans[i][1] < spans[i + 1][0] for i in range(2)), 'forks=1: one host at a time: %r' % spans
    assert snaps(hv1, webs['hv1'][0], 'standard') == ['hourly-1000', 'hourly-1100']
    assert snaps(hv2, db, 'db-daily') == ['daily-1000']            # daily: not due again

    # 12:00, serial=1: a rolling run, one batch per host
    job = run_job(tmp_path, ENFORCE, inv, {'nova_enforce_now': at(12), 'nova_enforce_serial': 1})
    assert job.status == 'successful', job.stdout[-4000:]
    assert job.batches(TASK) == 3
    assert snaps(hv3, webs['hv3'][2], 'standard') == ['hourly-1000', 'hourly-1100', 'hourly-1200']

    # 13:00 with hv2's libvirtd down: hv2 fails saying why, hv1 and hv3 finish
    hv2.stop_libvirt()
    job = run_job(tmp_path, ENFORCE, inv, {'nova_enforce_now': at(13)}, forks=3)
    assert job.status == 'failed'
    assert job.failed_hosts() == ['hv2'] and job.ok_hosts() == ['hv1', 'hv3']
    assert job.stats['failures'] == {'hv2': 1}                     # the recap names it
    msg = job.task_results(TASK)['hv2']['results'][0]['msg']
    assert msg.startswith("cannot connect to libvirt at 'qemu:///system'"), msg
    assert 'hv2' in job.stdout and 'failed=1' in job.stdout
    for h in (hv1, hv3):
        assert snaps(h, webs[h.name][1], 'standard')[-1] == 'hourly-1300'
    hv2.start_libvirt()
    for g in webs['hv2'] + [db]:
        g.refresh()
    assert snaps(hv2, webs['hv2'][1], 'standard') == ['hourly-1000', 'hourly-1100', 'hourly-1200']

    # 15:30, hv2 back: one snapshot catches up the missed hours (not one per missed hour), and
    # retention keeps 4 everywhere
    job = run_job(tmp_path, ENFORCE, inv, {'nova_enforce_now': at(15, 30)}, forks=3)
    assert job.status == 'successful', job.stdout[-4000:]
    for g in webs['hv2']:
        assert snaps(hv2, g, 'standard') == ['hourly-1000', 'hourly-1100', 'hourly-1200', 'hourly-1530']
    for h in (hv1, hv3):
        for g in webs[h.name]:
            assert snaps(h, g, 'standard') == ['hourly-1100', 'hourly-1200', 'hourly-1300', 'hourly-1530']
    assert snaps(hv2, db, 'db-daily') == ['daily-1000']
    # the same time again changes nothing
    again = run_job(tmp_path, ENFORCE, inv, {'nova_enforce_now': at(15, 30)}, forks=3)
    assert again.status == 'successful' and again.stats.get('changed', {}) == {}
    assert g.patterns('vda') == [1]


def test_a_vm_migrated_between_hypervisors_is_refused_until_its_store_is_taken_over(
        tmp_path, hosts, inventory, make_fleet_guest):
    hv1, hv3 = hosts[0], hosts[2]
    inv = inventory()
    guest = make_fleet_guest(hv1)
    api = 'nova.snapshots.snapshot_create'
    guest.write_pattern('vda', 1)
    for name in ('s1', 's2'):
        assert run_job(tmp_path, api, inv, dict(domain=guest.name, name=name, snapshot_type='disk_only')).status \
            == 'successful'
        guest.write_pattern('vda', 2)
    store = '/var/lib/nova/snapshots/' + guest.name
    owner = json.load(open(hv1.outside(store + '/owner.json')))
    assert (owner['host'], owner['domain'], owner['machine']) == \
        ('hv1', guest.name, open(hv1.dir + '/machine-id').read().strip())

    # Migrate by hand, as an admin would without shared storage: the disks (the base image and the
    # overlays, at the same paths) to hv3, the domain defined there, undefined on hv1. First without
    # the store's records: hv3 refuses to snapshot on top of layers it knows nothing of.
    xml = guest.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    shutil.copytree(guest.dir, hv3.outside(guest.inside_dir))
    shutil.copytree(hv1.outside(store), hv3.outside(store),
                    ignore=lambda d, names: [n for n in names if n in ('metadata.json', 'owner.json')])
    guest.stop()
    testbed.destroy_domain(hv1.conn, guest.name)
    moved = fleetbed.FleetGuest.__new__(fleetbed.FleetGuest)
    moved.host, moved.conn, moved.name, moved.inside_dir = hv3, hv3.conn, guest.name, guest.inside_dir
    moved.dir = hv3.outside(guest.inside_dir)
    moved.dom = hv3.conn.defineXML(xml)
    try:
        job = run_job(tmp_path, api, inv, dict(domain=guest.name, name='s3', snapshot_type='disk_only'))
        assert job.status == 'failed' and job.failed_hosts() == ['hv3']
        msg = job.result['hv3']['msg']
        assert msg.startswith("hv3: domain '%s': disk vda is %s/snapshots/" % (guest.name, store)), msg
        assert 'moved here from another hypervisor without its snapshot history' in msg
        assert hv3.libvirt_snapshots(guest.name) == []

        # The policy engine refuses it too, and says which VM
        policy = {'name': 'p', 'domains': [guest.name], 'snapshot_type': 'disk_only', 'schedule': {'hourly': True},
                  'retain': {'hourly': 5}}
        inv_p = inventory(group_vars={'nova_snapshot_policies': [policy]})
        job = run_job(tmp_path, ENFORCE, inv_p, {'nova_enforce_now': at(9), 'nova_enforce_hosts': 'hv3'})
        assert 'without its snapshot history' in job.stdout and hv3.libvirt_snapshots(guest.name) == []

        # Now with the store carried along too: it still names hv1, so hv3 refuses to claim it
        shutil.rmtree(hv3.outside(store))
        shutil.copytree(hv1.outside(store), hv3.outside(store))
        job = run_job(tmp_path, api, inv, dict(domain=guest.name, name='s3', snapshot_type='disk_only'))
        msg = job.result['hv3']['msg']
        assert job.status == 'failed' and 'was written on another hypervisor (hv1, machine-id %s)' % owner['machine'] \
            in msg and 'take the store over here by removing %s/owner.json' % store in msg, msg
        assert hv3.libvirt_snapshots(guest.name) == []

        # The admin takes it over (the VM is gone from hv1): the history moved with the VM
        os.unlink(hv3.outside(store + '/owner.json'))
        job = run_job(tmp_path, api, inv, dict(domain=guest.name, name='s3', snapshot_type='disk_only'))
        assert job.status == 'successful', job.stdout[-3000:]
        assert job.result['hv3']['snapshot']['parent_name'] == 's2'
        assert hv3.libvirt_snapshots(guest.name) == ['s1', 's2', 's3']      # libvirt told of s1, s2 again
        assert json.load(open(hv3.outside(store + '/owner.json')))['host'] == 'hv3'
        assert moved.patterns('vda') == [1, 2]
        rev = run_job(tmp_path, 'nova.snapshots.snapshot_revert', inv,
                      dict(domain=guest.name, name='s1', after='shutoff'))
        assert rev.status == 'successful', rev.stdout[-3000:]
        assert moved.patterns('vda') == [1]
    finally:
        moved.cleanup()
