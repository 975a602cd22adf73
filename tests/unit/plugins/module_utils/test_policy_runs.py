# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A policy enforced hour after hour, planned the way nova_policy state=enforced plans a run
(operations/_enforce.py: own_records over the tree, due_periods, render_name, policy_tags,
plan_retention), without libvirt: what is taken and what stays after every run."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.model._policy import (
    CATEGORY,
    due_periods,
    main_purpose,
    parse_policy,
    policy_tags,
    render_name,
)
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import SnapshotDisk, VmSnapshot
from ansible_collections.nova.snapshots.plugins.module_utils.model._retention import Record, plan_retention
from ansible_collections.nova.snapshots.plugins.module_utils.model._tree import Tree
from ansible_collections.nova.snapshots.plugins.module_utils.operations._enforce import own_records

VM = 'web-server'
UTC = datetime.timezone.utc


def enforce(tree, policy, now):
    """One run at `now`: (taken name or None, its periods, pruned names); the tree is updated."""
    records, newest, _last, _shutdown = own_records(tree, policy['name'])
    due = [p for p, _slot in due_periods(policy, now, newest)]
    taken, new = None, []
    if due:
        taken = render_name(policy['naming'], VM, main_purpose(due, []), now, [s.name for s in tree.snapshots.values()])
        new = [Record(taken, now.timestamp(), due)]
    plan = plan_retention(records + new, policy['retain'], now.timestamp())
    if taken:
        tags = policy_tags(policy['name'], due, [], now.timestamp())
        tree.add(VmSnapshot('id-' + taken, VM, taken, 'disk_only', int(now.timestamp()), 'running',
                            [SnapshotDisk('vda', '/img/%s.qcow2' % taken)], tags=tags, category=CATEGORY,
                            parent_snapshot=tree.current))
    pruned = plan.prune_keys
    for name in pruned:
        tree.remove(tree.by_name(name).id)
    return taken, due, pruned, dict((r.key, rules) for r, rules in plan.keep)


def kept(tree):
    return sorted(s.name for s in tree.snapshots.values())


ISSUE_POLICY = dict(domains=[VM], schedule=dict(hourly=True, daily='02:00'), retain=dict(hourly=3, daily=2))


def run_hours(policy, start, hours):
    tree, runs = Tree(VM), []
    for h in range(hours):
        runs.append(enforce(tree, policy, start + datetime.timedelta(hours=h)))
    return tree, runs


def test_issue_10_forty_hours_from_00_30_keep_three_hourly_and_two_daily():
    policy = parse_policy(ISSUE_POLICY, 'p')
    tree, runs = run_hours(policy, datetime.datetime(2026, 1, 1, 0, 30, tzinfo=UTC), 40)   # last run 2026-01-02 15:30
    # the first run catches up: ONE snapshot, serving every period due (the hour of 00:00 and the
    # daily of 2025-12-31 02:00), not one per missed instant
    assert runs[0][:3] == ('web-server-daily-20260101-001', ['hourly', 'daily'], [])
    assert runs[1][:2] == ('web-server-hourly-20260101-002', ['hourly'])
    assert runs[2][:2] == ('web-server-daily-20260101-003', ['hourly', 'daily'])   # 02:30, the 02:00 daily
    assert all(r[0] for r in runs)                                                  # one snapshot per run
    assert kept(tree) == ['web-server-daily-20260101-003', 'web-server-daily-20260102-003',
                          'web-server-hourly-20260102-014', 'web-server-hourly-20260102-015',
                          'web-server-hourly-20260102-016']
    assert runs[-1][3] == {'web-server-daily-20260101-003': ['daily 2 of 2'],
                           'web-server-daily-20260102-003': ['daily 1 of 2'],
                           'web-server-hourly-20260102-014': ['hourly 3 of 3'],
                           'web-server-hourly-20260102-015': ['hourly 2 of 3'],
                           'web-server-hourly-20260102-016': ['hourly 1 of 3']}
    # the catch-up daily goes when the second 02:00 daily arrives (2026-01-02 02:30), not two days after it was taken
    prunes = dict((name, i) for i, r in enumerate(runs) for name in r[2])
    assert prunes['web-server-daily-20260101-001'] == 26


@pytest.mark.parametrize('start_hour,start_minute', [(0, 0), (0, 30), (1, 59), (2, 0), (2, 1), (13, 17), (23, 59)])
@pytest.mark.parametrize('hours', [1, 2, 3, 25, 26, 27, 40, 49, 75])
def test_after_every_run_exactly_the_newest_n_of_each_period_stay(start_hour, start_minute, hours):
    policy = parse_policy(ISSUE_POLICY, 'p')
    start = datetime.datetime(2026, 1, 1, start_hour, start_minute, tzinfo=UTC)
    tree, runs = run_hours(policy, start, hours)
    assert all(r[0] for r in runs)                          # every run takes its hour's snapshot
    # kept: the union of each period's newest N, worked out from what the runs took
    expected = set()
    for period, n in (('hourly', 3), ('daily', 2)):
        expected |= set([name for name, due, _p, _k in runs if period in due][-n:])
    assert kept(tree) == sorted(expected)
    # and the dailies kept are the newest 02:00 instants taken, each for a different day
    records = own_records(tree, 'p')[0]
    days = [datetime.datetime.fromtimestamp(r.time, UTC) - datetime.timedelta(hours=2) for r in records if 'daily' in r.periods]
    assert len(set(d.date() for d in days)) == len(days) == min(2, len([r for r in runs if 'daily' in r[1]]))


def test_a_first_run_takes_one_snapshot_for_every_period_due():
    policy = parse_policy(dict(domains=[VM], schedule=dict(hourly=True, daily='02:00', weekly='sunday 03:00',
                                                           monthly='first-sunday 04:00', yearly='01-01 05:00'),
                               retain=dict(hourly=2, daily=2, weekly=2, monthly=2, yearly=2)), 'p')
    tree = Tree(VM)
    taken, due, pruned, _keep = enforce(tree, policy, datetime.datetime(2026, 3, 11, 12, 30, tzinfo=UTC))
    assert (taken, due, pruned) == ('web-server-yearly-20260311-001', ['hourly', 'daily', 'weekly', 'monthly', 'yearly'], [])
    assert kept(tree) == [taken]
    # the next hour takes only the hourly; the catch-up stays, it is the newest of its other periods
    taken, due, pruned, keep = enforce(tree, policy, datetime.datetime(2026, 3, 11, 13, 30, tzinfo=UTC))
    assert (due, pruned) == (['hourly'], [])
    assert keep['web-server-yearly-20260311-001'] == ['hourly 2 of 2', 'daily 1 of 2', 'weekly 1 of 2',
                                                      'monthly 1 of 2', 'yearly 1 of 2']
