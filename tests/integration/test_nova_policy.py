# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova_policy through ansible-playbook on the real test guest.

Two simulated days stepped six hours at a time create and prune real snapshots; what is left must
be exactly what the rules keep, each kept snapshot must restore the disk markers written before it,
and snapshots taken by hand or tagged `protected` must survive.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess

import libvirt
from lxml import etree

from testbed import assert_markers, image_bytes, run_task, write_markers

MODULE = 'nova.snapshots.nova_policy'
STEPS = 9          # 2026-01-01 00:00 to 2026-01-03 00:00, every six hours
START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def policy(guest, **args):
    args.setdefault('storage_dir', guest.storage_dir)
    return run_task(MODULE, args)


def ok(result):
    assert not result.get('failed'), result.get('msg')
    return result


def libvirt_names(guest):
    return sorted(s.getName() for s in guest.dom.listAllSnapshots())


def step_time(k):
    return START + datetime.timedelta(hours=6 * (k - 1))


def active_image(guest, dev='vda'):
    xml = etree.fromstring(guest.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    return xml.xpath('devices/disk[target/@dev=$d]/source/@file', d=dev)[0]


def markers_on_host(guest, last):
    """The markers of vda as the reverted (shut-off) VM's disk shows them, read on the host."""
    path = active_image(guest)
    return [image_bytes(path, k * 4096, 12).rstrip(b'\0').decode() for k in range(1, last + 1)]


def test_simulated_days_keep_exactly_what_the_rules_keep(make_guest):
    guest = make_guest(disks=1)
    name = 'p'
    keys = dict(name=name, domain=guest.name, snapshot_type='disk_only',
                schedule=dict(hourly=True, daily='00:00'), retain=dict(hourly=3, daily=2))

    # a bad policy fails naming the key, before anything is stored or taken
    for bad, key, state in ((dict(retain=dict(hourly=3, daily=-1)), 'retain.daily', 'present'),
                            (dict(schedule=dict(daily='25:00')), 'schedule.daily', 'enforced')):
        args = dict(keys, state=state, now=START.isoformat())
        args.update(bad)
        failed = policy(guest, **args)
        assert failed['failed'] is True and ("policy 'p': %s " % key) in failed['msg'], failed['msg']
    args = dict(keys, state='enforced')
    args['schedule'] = dict(hourly=True, fortnightly='monday 01:00')
    unknown = policy(guest, **args)
    assert unknown['failed'] is True and 'schedule.fortnightly' in unknown['msg']
    assert libvirt_names(guest) == []
    assert not os.path.exists(os.path.join(guest.storage_dir, 'policies'))

    stored = ok(policy(guest, state='present', **keys))
    assert stored['changed'] is True and stored['policy']['retain'] == dict(hourly=3, daily=2)
    with open(os.path.join(guest.storage_dir, 'policies', 'p.json')) as f:
        assert json.load(f) == stored['policy']
    assert ok(policy(guest, state='present', **keys))['changed'] is False

    # taken by hand, and one that looks like the policy's own but is protected: both must survive
    for snap, tags, category in (('by-hand', ['update'], None),
                                 ('kept-forever', ['nova-policy:p', 'period:hourly', 'policy-at:20251231T000000Z',
                                                   'protected'], 'policy')):
        ok(run_task('nova.snapshots.nova_snapshot', dict(domain=guest.name, name=snap, snapshot_type='disk_only',
                                                         tags=tags, category=category, storage_dir=guest.storage_dir)))

    taken_at = {}        # snapshot name -> step whose markers it holds
    # the worked example of docs/policy.md: which runs prune the snapshots of which earlier runs
    prunes = {5: [2], 6: [3], 7: [4], 9: [1, 6]}
    for k in range(1, STEPS + 1):
        write_markers(guest, k)
        now = step_time(k).isoformat()
        if k == 5:
            before = libvirt_names(guest)
            dry = run_task(MODULE, dict(name=name, state='enforced', now=now, storage_dir=guest.storage_dir), check=True)
            assert ok(dry)['changed'] is True and len(dry['taken']) == 1
            assert libvirt_names(guest) == before                   # check mode changed nothing
        result = ok(policy(guest, name=name, state='enforced', now=now))
        assert result['changed'] is True
        assert [t['domain'] for t in result['taken']] == [guest.name]
        taken = result['taken'][0]
        assert sorted(taken['purposes']) == (['daily', 'hourly'] if k % 4 == 1 else ['hourly'])
        taken_at[taken['name']] = k
        assert sorted(taken_at[p['name']] for p in result['pruned']) == prunes.get(k, [])
        if k == 5:
            assert (dry['taken'], dry['pruned']) == (result['taken'], result['pruned'])   # the plan was the truth
        assert 'kept-forever' in [x['name'] for x in result['kept'] if x['rules'] == ['protected']]

    # hourly 3 keeps steps 7, 8, 9; daily 2 keeps the 00:00 steps 5 and 9
    by_step = dict((k, n) for n, k in taken_at.items())
    assert by_step[1] == '%s-daily-20260101-001' % guest.name and by_step[2] == '%s-hourly-20260101-002' % guest.name
    expected = sorted([by_step[k] for k in (5, 7, 8, 9)] + ['by-hand', 'kept-forever'])
    assert libvirt_names(guest) == expected
    again = ok(policy(guest, name=name, state='enforced', now=step_time(STEPS).isoformat()))
    assert again['changed'] is False and again['taken'] == [] and again['pruned'] == []
    assert sorted(x['name'] for x in again['kept']) == sorted([by_step[k] for k in (5, 7, 8, 9)] + ['kept-forever'])
    rules = dict((x['name'], x['rules']) for x in again['kept'])
    assert rules[by_step[9]] == ['hourly 1 of 3', 'daily 1 of 2'] and rules[by_step[5]] == ['daily 2 of 2']
    assert libvirt_names(guest) == expected

    # every kept snapshot restores the markers written before it, and none after
    for k in (5, 7, 8):
        ok(run_task('nova.snapshots.nova_snapshot', dict(domain=guest.name, name=by_step[k], state='reverted',
                                                         after='shutoff', storage_dir=guest.storage_dir)))
        assert markers_on_host(guest, STEPS) == ['step%d-vda' % i if i <= k else '' for i in range(1, STEPS + 1)]
    ok(run_task('nova.snapshots.nova_snapshot', dict(domain=guest.name, name=by_step[9], state='reverted',
                                                     after='running', storage_dir=guest.storage_dir)))
    guest.wait_ready()
    assert_markers(guest, STEPS, last=STEPS)
    assert libvirt_names(guest) == expected


def test_shutdown_queue_all_stored_policies_and_absent(make_guest):
    guest = make_guest(disks=1, running=False)
    store = guest.storage_dir
    ok(policy(guest, name='on-stop', domains=[guest.name[:-2] + '*'], conditions=dict(on_shutdown=True)))
    ok(policy(guest, name='weekly', domain=guest.name, schedule=dict(weekly='sunday 03:00'), retain=dict(weekly=2),
              naming='{vm}-{purpose}-{date}{time}'))
    now = '2026-01-04T12:00:00Z'     # a Sunday

    # no name, no policy keys: every stored policy; nothing queued yet, so only the weekly one takes
    first = ok(policy(guest, state='enforced', now=now))
    assert first['policy'] is None and sorted(p['name'] for p in first['policies']) == ['on-stop', 'weekly']
    assert [(t['policy'], t['name']) for t in first['taken']] == [('weekly', '%s-weekly-202601041200' % guest.name)]

    # the libvirt hook only queues; enforcing takes the shutdown snapshot and consumes the queue file
    queue = os.path.join(store, 'queue')
    os.makedirs(queue, exist_ok=True)
    with open(os.path.join(queue, '%s.shutdown' % guest.name), 'w') as f:
        f.write('2026-01-04T11:59:00Z stopped\n')        # what the hook writes
    dry = run_task(MODULE, dict(state='enforced', now=now, storage_dir=store), check=True)
    assert ok(dry)['changed'] is True and dry['dequeued'] == [guest.name]
    assert os.path.exists(os.path.join(queue, '%s.shutdown' % guest.name))
    second = ok(policy(guest, state='enforced', now=now))
    assert [(t['policy'], t['purposes']) for t in second['taken']] == [('on-stop', ['shutdown'])]
    assert second['dequeued'] == [guest.name] and os.listdir(queue) == []
    assert ok(policy(guest, state='enforced', now=now))['changed'] is False
    assert len(libvirt_names(guest)) == 2

    # on_change_percent: 20 of the disk's 64 MiB written into its active overlay (on the host, VM off)
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 7 0 20M', active_image(guest)], check=True,
                   capture_output=True)
    change = dict(name='changes', domain=guest.name, state='enforced', now=now)
    assert ok(policy(guest, conditions=dict(on_change_percent=40), **change))['changed'] is False
    took = ok(policy(guest, conditions=dict(on_change_percent=25), **change))
    assert [t['purposes'] for t in took['taken']] == [['change']]
    assert 'of the disk written since the last snapshot' in took['taken'][0]['reason']
    assert ok(policy(guest, conditions=dict(on_change_percent=25), **change))['changed'] is False
    assert len(libvirt_names(guest)) == 3

    missing = policy(guest, name='nope', state='enforced', now=now)
    assert missing['failed'] is True and "no policy named 'nope' is stored" in missing['msg']
    gone = ok(run_task(MODULE, dict(name='weekly', state='absent', storage_dir=store), diff=True))
    assert gone['changed'] is True and gone['diff']['before']['schedule'] == dict(weekly='sunday 03:00')
    assert ok(policy(guest, name='weekly', state='absent'))['changed'] is False
    assert len(libvirt_names(guest)) == 3        # removing a policy keeps its snapshots


def chain_length(path):
    out = subprocess.run(['qemu-img', 'info', '-U', '--backing-chain', '--output=json', path], check=True,
                         capture_output=True, text=True).stdout
    return len(json.loads(out))


def test_auto_consolidate_keeps_chains_short(make_guest):
    guest = make_guest(disks=1)
    keys = dict(name='short', domain=guest.name, schedule=dict(hourly=True), retain=dict(hourly=10),
                auto_consolidate=True, max_chain_length=3, state='enforced')
    names = []
    for k in range(1, 6):
        write_markers(guest, k)
        result = ok(policy(guest, now=(START + datetime.timedelta(hours=k)).isoformat(), **keys))
        names.append(result['taken'][0]['name'])
        assert result['pruned'] == []
        live = etree.fromstring(guest.dom.XMLDesc(0).encode()).xpath('devices/disk/source/@file')[0]
        assert chain_length(live) <= 3
        assert bool(result['consolidated']) == (k >= 3), result['consolidated']
    again = ok(policy(guest, now=(START + datetime.timedelta(hours=5)).isoformat(), **keys))
    assert again['changed'] is False and again['consolidated'] == []
    assert libvirt_names(guest) == sorted(names)
    assert_markers(guest, 5, last=5)
    # the oldest snapshot still restores what it held, though its layers were merged
    ok(run_task('nova.snapshots.nova_snapshot', dict(domain=guest.name, name=names[0], state='reverted',
                                                     after='shutoff', storage_dir=guest.storage_dir)))
    assert markers_on_host(guest, 5) == ['step1-vda', '', '', '', '']
