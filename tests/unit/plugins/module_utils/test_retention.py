# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The retention planner: sanoid's rules, as tables and as properties over random histories."""

from __future__ import annotations

import datetime

from hypothesis import given, settings, strategies as st

from ansible_collections.nova.snapshots.plugins.module_utils.model._policy import last_slot
from ansible_collections.nova.snapshots.plugins.module_utils.model._retention import Record, plan_retention

H = 3600
D = 86400
PERIODS = ('hourly', 'daily', 'weekly', 'monthly', 'yearly')


def keys(pairs):
    return [r.key for r, _rules in pairs]


# -- tables ------------------------------------------------------------------------------------------
def test_keeps_newest_n_and_says_which_rule():
    recs = [Record('h%d' % i, i * H, ['hourly']) for i in range(6)]
    plan = plan_retention(recs, {'hourly': 3}, 5 * H)
    assert keys(plan.keep) == ['h3', 'h4', 'h5']
    assert dict((r.key, rules) for r, rules in plan.keep) == {
        'h5': ['hourly 1 of 3'], 'h4': ['hourly 2 of 3'], 'h3': ['hourly 3 of 3']}
    assert plan.prune_keys == ['h0', 'h1', 'h2']
    assert dict((r.key, rule) for r, rule in plan.prune)['h2'] == 'hourly: 4th newest of 6, 3 kept'


def test_one_snapshot_serves_several_periods_and_any_period_keeps_it():
    recs = [Record('a', 0, ['daily', 'hourly']), Record('b', H, ['hourly']), Record('c', 2 * H, ['hourly'])]
    plan = plan_retention(recs, {'hourly': 1, 'daily': 1}, 2 * H)
    assert keys(plan.keep) == ['a', 'c']
    assert dict((r.key, rules) for r, rules in plan.keep)['a'] == ['daily 1 of 1']
    assert plan.prune_keys == ['b']


def test_a_surplus_is_pruned_however_young_it_is():
    # a first run's catch-up daily and the next day's 02:00 one within hours of each other, then another:
    # daily 2 keeps exactly the newest two (issue 10: the catch-up was held back as a third daily)
    recs = [Record('a', 0, ['daily']), Record('b', 2 * H, ['daily']), Record('c', D + 2 * H, ['daily'])]
    for now in (D + 2 * H, 2 * D - 1, 2 * D, 100 * D):
        plan = plan_retention(recs, {'daily': 2}, now)
        assert plan.prune_keys == ['a']
        assert dict((r.key, rule) for r, rule in plan.prune)['a'] == 'daily: 3rd newest of 3, 2 kept'
        assert dict((r.key, rules) for r, rules in plan.keep) == {'b': ['daily 2 of 2'], 'c': ['daily 1 of 2']}


def test_manual_protected_and_other_policies_are_never_pruned():
    recs = [Record('manual', 0, [], owned=False), Record('other', 1, ['hourly'], owned=False),
            Record('prot', 2, ['hourly'], protected=True), Record('old', 3, ['hourly']), Record('new', 4 * H, ['hourly'])]
    plan = plan_retention(recs, {'hourly': 1}, 100 * H)
    assert plan.prune_keys == ['old']
    assert keys(plan.keep) == ['prot', 'new']     # only the policy's own snapshots are reported
    assert dict((r.key, rules) for r, rules in plan.keep)['prot'] == ['protected']


def test_period_without_count_keeps_everything_and_zero_keeps_nothing():
    recs = [Record('w%d' % i, i * 7 * D, ['weekly']) for i in range(4)]
    assert plan_retention(recs, {}, 100 * D).prune_keys == []
    assert plan_retention(recs, {'weekly': 0}, 100 * D).prune_keys == ['w0', 'w1', 'w2', 'w3']


def test_condition_only_snapshots_follow_retain_conditional():
    recs = [Record('c%d' % i, i, []) for i in range(4)]
    assert plan_retention(recs, {}, 10).prune_keys == []
    assert plan_retention(recs, {'conditional': 2}, 10).prune_keys == ['c0', 'c1']


# -- properties --------------------------------------------------------------------------------------
record_lists = st.lists(
    st.tuples(st.integers(0, 400 * D),
              st.sets(st.sampled_from(PERIODS), max_size=3),
              st.booleans(), st.booleans()),
    max_size=60)
retains = st.dictionaries(st.sampled_from(PERIODS + ('conditional',)), st.integers(0, 6))


def build(items):
    return [Record('s%03d' % i, t, sorted(periods), owned=owned, protected=prot)
            for i, (t, periods, owned, prot) in enumerate(items)]


@settings(max_examples=300, deadline=None)
@given(record_lists, retains, st.integers(0, 500 * D))
def test_never_prunes_manual_or_protected(items, retain, now):
    recs = build(items)
    pruned = set(plan_retention(recs, retain, now).prune_keys)
    assert all(r.owned and not r.protected for r in recs if r.key in pruned)


@settings(max_examples=300, deadline=None)
@given(record_lists, retains, st.integers(0, 500 * D))
def test_exactly_the_newest_n_of_each_period_are_kept(items, retain, now):
    recs = build(items)
    plan = plan_retention(recs, retain, now)
    pruned = set(plan.prune_keys)
    candidates = [r for r in recs if r.owned and not r.protected]
    for period in PERIODS + ('conditional',):
        serving = sorted([r for r in candidates if (period in r.periods) or (period == 'conditional' and not r.periods)],
                         key=lambda r: (r.time, r.key), reverse=True)
        n = retain.get(period)
        if n is None:
            assert not pruned & set(r.key for r in serving)
            continue
        assert not pruned & set(r.key for r in serving[:n])
    # a snapshot is pruned exactly when, for every period it serves, it is beyond that period's newest N
    for rec in candidates:
        beyond = []
        for period in rec.periods or ('conditional',):
            serving = sorted([r for r in candidates if (period in r.periods) or (period == 'conditional' and not r.periods)],
                             key=lambda r: (r.time, r.key), reverse=True)
            n = retain.get(period)
            beyond.append(n is not None and serving.index(rec) >= n)
        assert (rec.key in pruned) == all(beyond), rec
    # and everything owned is either kept or pruned, exactly once
    assert sorted(keys(plan.keep) + plan.prune_keys) == sorted(r.key for r in recs if r.owned)


@settings(max_examples=300, deadline=None)
@given(record_lists, retains, st.integers(0, 500 * D))
def test_idempotent_planning_again_on_the_kept_set_prunes_nothing(items, retain, now):
    recs = build(items)
    pruned = set(plan_retention(recs, retain, now).prune_keys)
    rest = [r for r in recs if r.key not in pruned]
    assert plan_retention(rest, retain, now).prune_keys == []


SPECS = {'hourly': True, 'daily': '02:00', 'weekly': 'sunday 03:00', 'monthly': 'first-sunday 04:00',
         'yearly': '01-01 05:00'}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(PERIODS), st.integers(0, 5), st.integers(1, 30), st.integers(0, 10 ** 6))
def test_one_snapshot_per_scheduled_instant_keeps_exactly_the_newest_n(period, n, slots, offset):
    """A history taken at the schedule's instants: exactly the newest N stay."""
    now = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=offset)
    instants, at = [], now
    for _step in range(slots):
        slot = last_slot(period, SPECS[period], at)
        instants.append(slot.timestamp())
        at = slot - datetime.timedelta(seconds=1)
    recs = [Record('s%d' % i, t, [period]) for i, t in enumerate(instants)]   # s0 newest
    plan = plan_retention(recs, {period: n}, now.timestamp())
    assert sorted(keys(plan.keep)) == sorted('s%d' % i for i in range(min(n, slots)))


def test_plans_100k_snapshots_quickly():
    import time
    recs = [Record('s%06d' % i, i * H, ['hourly'] + (['daily'] if i % 24 == 0 else [])) for i in range(100000)]
    start = time.process_time()   # CPU time: other work on the machine does not count
    plan = plan_retention(recs, {'hourly': 24, 'daily': 7}, 100000 * H)
    assert time.process_time() - start < 2.0
    assert len(plan.keep) == 24 + 7 - 1     # the newest daily is also an hourly one
