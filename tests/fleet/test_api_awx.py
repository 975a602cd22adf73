# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The REST API playbooks (nova.snapshots.snapshot_*) run as AWX runs a job template: through
ansible_runner.run() with the extra vars a launch would send, on the fleet over ssh. Each test
asserts on the job's artifacts (set_stats nova_result) and on the hypervisor's real state."""

from __future__ import annotations

import fleetbed
from fleetbed import run_job, run_tasks

NS = 'nova.snapshots.'
STORE = {'nova_snapshot_storage_dir': fleetbed.STORE}


def test_create_get_list_tree_revert_delete(tmp_path, hosts, inventory, make_fleet_guest):
    hv1, hv2, hv3 = hosts
    inv = inventory()
    guest = make_fleet_guest(hv2, disks=1)
    guest.write_pattern('vda', 1)

    # POST /vms/{vm}/snapshots: the body a survey sends (tags as one comma-separated string)
    job = run_job(tmp_path, NS + 'snapshot_create', inv, dict(
        nova_hosts='all', domain=guest.name, name='s1', snapshot_type='disk_only',
        description='before the upgrade', tags='pre-upgrade, weekly'))
    assert job.status == 'successful', job.stdout[-3000:]
    assert sorted(job.result) == ['hv2']                     # only the host that defines the VM acts
    s1 = job.result['hv2']['snapshot']
    assert (s1['name'], s1['snapshot_type'], s1['description']) == ('s1', 'disk_only', 'before the upgrade')
    assert sorted(s1['tags']) == ['pre-upgrade', 'weekly'] and job.result['hv2']['changed'] is True
    assert hv2.libvirt_snapshots(guest.name) == ['s1']
    assert [s['name'] for s in hv2.store_meta(guest.name)['snapshots']] == ['s1']
    assert hv1.store_meta(guest.name) is None and hv3.store_meta(guest.name) is None
    top = guest.tops()['vda']
    assert top.startswith(fleetbed.STORE + '/' + guest.name + '/'), top   # the overlay, in hv2's own store
    guest.write_pattern('vda', 2)                            # into the overlay above s1

    again = run_job(tmp_path, NS + 'snapshot_create', inv, dict(domain=guest.name, name='s1', snapshot_type='disk_only'))
    assert again.status == 'successful' and again.result['hv2']['changed'] is False

    job = run_job(tmp_path, NS + 'snapshot_create', inv, dict(domain=guest.name, name='s2', snapshot_type='disk_only',
                                                              tags=['later']))
    assert job.status == 'successful' and job.result['hv2']['snapshot']['tags'] == ['later']

    # GET /vms/{vm}/snapshots/{id}, by name and by id
    got = run_job(tmp_path, NS + 'snapshot_get', inv, dict(domain=guest.name, name='s1'))
    assert got.status == 'successful', got.stdout[-3000:]
    snap = got.result['hv2']['snapshot']
    assert snap['name'] == 's1' and snap['id'] == s1['id'] and got.result['hv2']['path_to_root'] == ['s1']
    assert snap['disk_files'][0]['chain'], 'details: the backing chain of each disk'
    by_id = run_job(tmp_path, NS + 'snapshot_get', inv, dict(domain=guest.name, name=s1['id']))
    assert by_id.result['hv2']['snapshot']['name'] == 's1'
    assert got.result['hv2']['descendants'] == ['s2']

    # GET /vms/{vm}/snapshots, with a filter; and without a domain: every host answers
    listed = run_job(tmp_path, NS + 'snapshot_list', inv, dict(domain=guest.name, tags='later'))
    assert [s['name'] for s in listed.result['hv2']['snapshots']] == ['s2']
    everything = run_job(tmp_path, NS + 'snapshot_list', inv, dict(nova_hosts='hypervisors'))
    assert sorted(everything.result) == ['hv1', 'hv2', 'hv3']
    assert guest.name in everything.result['hv2']['domains'] and guest.name not in everything.result['hv1']['domains']

    # GET /vms/{vm}/snapshot-tree
    tree = run_job(tmp_path, NS + 'snapshot_tree', inv, dict(domain=guest.name))
    t = tree.result['hv2']
    assert t['current'] == 's2' and [(s['name'], s['parent']) for s in t['snapshots']] == [('s1', None), ('s2', 's1')]
    assert 's1' in t['tree_text'] and 's2' in t['tree_text']

    # POST /vms/{vm}/snapshots/{id}/revert: the disk is back at s1 (pattern 2 gone)
    assert guest.patterns('vda') == [1, 2]
    rev = run_job(tmp_path, NS + 'snapshot_revert', inv, dict(domain=guest.name, name='s1', after='shutoff'))
    assert rev.status == 'successful', rev.stdout[-3000:]
    assert rev.result['hv2']['changed'] is True and guest.state == 'shutoff'
    assert guest.patterns('vda') == [1]

    # DELETE /vms/{vm}/snapshots/{id}
    gone = run_job(tmp_path, NS + 'snapshot_delete', inv, dict(domain=guest.name, name='s2'))
    assert gone.status == 'successful' and gone.result['hv2']['snapshot']['name'] == 's2'
    assert hv2.libvirt_snapshots(guest.name) == ['s1']
    assert guest.patterns('vda') == [1]

    # a snapshot that does not exist: the job fails, the artifact says why
    missing = run_job(tmp_path, NS + 'snapshot_get', inv, dict(domain=guest.name, name='s2'))
    assert missing.status == 'failed' and missing.failed_hosts() == ['hv2']
    assert missing.result['hv2'] == {'failed': True, 'msg': "domain '%s' has no snapshot named 's2'" % guest.name}


def test_merge_through_the_api(tmp_path, hosts, inventory, make_fleet_guest):
    hv1 = hosts[0]
    inv = inventory()
    guest = make_fleet_guest(hv1, disks=1)
    tree = {'domain': guest.name, 'storage_dir': fleetbed.STORE}
    guest.write_pattern('vda', 1)
    run_job(tmp_path, NS + 'snapshot_create', inv, dict(domain=guest.name, name='root', snapshot_type='disk_only'))
    branch = dict(tree, state='branched', name='feature', **{'from': 'root'})
    run_tasks(tmp_path, inv, hv1, [{'nova.snapshots.nova_snapshot_tree': branch}])
    guest.write_pattern('vda', 2)                                    # on main
    run_job(tmp_path, NS + 'snapshot_create', inv, dict(domain=guest.name, name='m1', snapshot_type='disk_only'))
    run_tasks(tmp_path, inv, hv1, [{'nova.snapshots.nova_snapshot_tree': dict(tree, state='switched', name='feature')}])
    assert guest.patterns('vda') == [1]
    guest.write_pattern('vda', 3)                                    # on feature
    run_job(tmp_path, NS + 'snapshot_create', inv, dict(domain=guest.name, name='f1', snapshot_type='disk_only'))

    # POST /vms/{vm}/snapshot-tree/merge
    job = run_job(tmp_path, NS + 'snapshot_merge', inv, dict(domain=guest.name, source='feature', target='main'))
    assert job.status == 'successful', job.stdout[-3000:]
    merged = job.result['hv1']
    assert merged['changed'] is True and merged['conflicts'] == []
    assert [b['head'] for b in merged['branches'] if b['name'] == 'main'] == ['merge-feature-into-main']
    assert 'merge-feature-into-main' in hv1.libvirt_snapshots(guest.name)
    run_tasks(tmp_path, inv, hv1, [{'nova.snapshots.nova_snapshot_tree': dict(tree, state='switched', name='main')}])
    assert guest.patterns('vda') == [1, 2, 3]                        # main now has feature's change too

    again = run_job(tmp_path, NS + 'snapshot_merge', inv, dict(domain=guest.name, source='feature', target='main'))
    assert again.status == 'successful' and again.result['hv1']['changed'] is False


def test_domain_on_no_host_and_host_down(tmp_path, hosts, inventory, make_fleet_guest):
    hv1, hv2, hv3 = hosts
    inv = inventory()
    nowhere = run_job(tmp_path, NS + 'snapshot_create', inv, dict(domain='novatest-nowhere', name='x'))
    assert nowhere.status == 'failed' and nowhere.failed_hosts() == ['hv1', 'hv2', 'hv3']
    assert nowhere.result['hv1']['msg'] == \
        "domain 'novatest-nowhere' is defined on none of the hosts hv1, hv2, hv3"

    guest = make_fleet_guest(hv3)
    hv2.stop_libvirt()
    job = run_job(tmp_path, NS + 'snapshot_create', inv, dict(domain=guest.name, name='while-hv2-down',
                                                              snapshot_type='disk_only'))
    # hv2 cannot answer: it fails saying so; hv3 still takes the snapshot
    assert job.status == 'failed' and job.failed_hosts() == ['hv2']
    assert job.result['hv2']['failed'] is True and 'cannot connect to libvirt' in job.result['hv2']['msg']
    assert job.result['hv3']['snapshot']['name'] == 'while-hv2-down'
    assert hv3.libvirt_snapshots(guest.name) == ['while-hv2-down']

    # no extra var for the VM: a clear message, not a template error
    bare = run_job(tmp_path, NS + 'snapshot_delete', inv, dict(nova_hosts='hv1', name='x'))
    assert bare.status == 'failed'
    assert bare.result['hv1']['msg'] == "extra var 'domain' (the VM) is required by this playbook"
