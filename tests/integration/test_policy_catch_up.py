# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 10: a policy started between its daily instants. The first run catches up with one
snapshot, and retention keeps exactly the newest N of each period: the catch-up goes as soon as
two newer 02:00 dailies exist, not when it is two days old."""

from __future__ import annotations

import datetime

from testbed import run_task

MODULE = 'nova.snapshots.nova_policy'
UTC = datetime.timezone.utc
# runs of the hourly timer, with the host off between the first day's 03:30 and the second day's 02:30
RUNS = [datetime.datetime(2026, 1, 1, h, 30, tzinfo=UTC) for h in (0, 1, 2, 3)] + \
       [datetime.datetime(2026, 1, 2, h, 30, tzinfo=UTC) for h in (2, 3, 4)]


def test_a_first_runs_catch_up_is_pruned_by_the_newest_two_dailies(make_guest):
    guest = make_guest(disks=1)
    keys = dict(name='p', domain=guest.name, snapshot_type='disk_only', storage_dir=guest.storage_dir,
                schedule=dict(hourly=True, daily='02:00'), retain=dict(hourly=3, daily=2), state='enforced')
    vm = guest.name
    taken, pruned = [], {}
    for i, now in enumerate(RUNS):
        guest.write_marker('vda', (i + 1) * 4096, 'run%d' % i)
        result = run_task(MODULE, dict(keys, now=now.isoformat()))
        assert not result.get('failed'), result.get('msg')
        assert len(result['taken']) == 1
        taken.append((result['taken'][0]['name'], sorted(result['taken'][0]['purposes'])))
        pruned[i] = sorted(p['name'] for p in result['pruned'])
    assert taken == [('%s-daily-20260101-001' % vm, ['daily', 'hourly']),      # the catch-up: one snapshot
                     ('%s-hourly-20260101-002' % vm, ['hourly']),
                     ('%s-daily-20260101-003' % vm, ['daily', 'hourly']),
                     ('%s-hourly-20260101-004' % vm, ['hourly']),
                     ('%s-daily-20260102-001' % vm, ['daily', 'hourly']),
                     ('%s-hourly-20260102-002' % vm, ['hourly']),
                     ('%s-hourly-20260102-003' % vm, ['hourly'])]
    # 01-02 02:30: the second 02:00 daily arrives, so the catch-up is the third daily and goes
    assert pruned[4] == sorted(['%s-daily-20260101-001' % vm, '%s-hourly-20260101-002' % vm])
    kept = ['%s-daily-20260101-003' % vm, '%s-daily-20260102-001' % vm,
            '%s-hourly-20260102-002' % vm, '%s-hourly-20260102-003' % vm]
    assert sorted(s.getName() for s in guest.dom.listAllSnapshots()) == kept
    again = run_task(MODULE, dict(keys, now=RUNS[-1].isoformat()))
    assert again['changed'] is False and again['pruned'] == []
    rules = dict((k['name'], k['rules']) for k in again['kept'])
    assert rules == {'%s-daily-20260101-003' % vm: ['daily 2 of 2'],
                     '%s-daily-20260102-001' % vm: ['hourly 3 of 3', 'daily 1 of 2'],
                     '%s-hourly-20260102-002' % vm: ['hourly 2 of 3'],
                     '%s-hourly-20260102-003' % vm: ['hourly 1 of 3']}
    # the VM still shows every marker it wrote: pruning merged layers, it lost nothing
    assert [guest.read_marker('vda', (i + 1) * 4096) for i in range(len(RUNS))] == ['run%d' % i for i in range(len(RUNS))]
