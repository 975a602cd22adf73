# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Policies: validation with errors that name the key, schedules, what is due, names and tags."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.nova.snapshots.plugins.module_utils.model._policy import (
    PolicyError,
    condition_purposes,
    conditions_kept,
    due_periods,
    last_slot,
    main_purpose,
    parse_duration,
    parse_now,
    parse_policy,
    policy_tags,
    read_tags,
    render_name,
)

UTC = datetime.timezone.utc


def at(*args):
    return datetime.datetime(*args, tzinfo=UTC)


ISSUE_POLICY = dict(
    domains=['web-*'], snapshot_type='disk_only',
    schedule=dict(hourly=True, daily='02:00', weekly='sunday 03:00', monthly='first-sunday 04:00'),
    retain=dict(hourly=24, daily=7, weekly=4, monthly=12, yearly=3),
    conditions=dict(on_shutdown=True, on_change_percent=10, on_uptime='24h'),
    max_chain_length=10, auto_consolidate=True, naming='{vm}-{purpose}-{date}-{seq}')


# -- parsing -----------------------------------------------------------------------------------------
def test_the_issue_policy_normalizes():
    p = parse_policy(ISSUE_POLICY, 'web')
    assert p == dict(name='web', domains=['web-*'], snapshot_type='disk_only',
                     schedule=dict(hourly=True, daily='02:00', weekly='sunday 03:00', monthly='first-sunday 04:00'),
                     retain=dict(hourly=24, daily=7, weekly=4, monthly=12, yearly=3),
                     conditions=dict(on_shutdown=True, on_change_percent=10.0, on_uptime='24h'),
                     max_chain_length=10, auto_consolidate=True, naming='{vm}-{purpose}-{date}-{seq}')
    assert parse_policy(p, 'web') == p     # normalizing is a fixed point (stored policies read back equal)


def test_defaults_and_ansible_style_none_entries():
    p = parse_policy(dict(domains=['a'], schedule=dict(hourly=None, daily='2:00', weekly=None),
                          retain=dict(daily=None), conditions=None, snapshot_type=None), 'x')
    assert p['schedule'] == {'daily': '02:00'} and p['retain'] == {} and p['conditions'] == {}
    assert (p['snapshot_type'], p['max_chain_length'], p['auto_consolidate'], p['naming']) == \
        ('disk_only', 10, False, '{vm}-{purpose}-{date}-{seq}')


@pytest.mark.parametrize('change, key, words', [
    (dict(frequency='daily'), 'frequency', 'is not a policy key'),
    (dict(retain=dict(daily=-1)), 'retain.daily', 'must be a whole number >= 0, got -1'),
    (dict(retain=dict(fortnightly=2)), 'retain.fortnightly', 'is not a known key'),
    (dict(retain=dict(daily='7')), 'retain.daily', 'must be a whole number'),
    (dict(schedule=dict(daily='25:00')), 'schedule.daily', "cannot be read from '25:00'"),
    (dict(schedule=dict(weekly='sundae 03:00')), 'schedule.weekly', 'cannot be read'),
    (dict(schedule=dict(monthly='31 04:00')), 'schedule.monthly', 'cannot be read'),
    (dict(schedule=dict(monthly='fifth-sunday 04:00')), 'schedule.monthly', 'cannot be read'),
    (dict(schedule=dict(yearly='02-29 00:00')), 'schedule.yearly', 'cannot be read'),
    (dict(schedule=dict(hourly='yes')), 'schedule.hourly', 'cannot be read'),
    (dict(schedule='daily'), 'schedule', 'must be a dictionary'),
    (dict(conditions=dict(on_uptime='a day')), 'conditions.on_uptime', "cannot be read from 'a day'"),
    (dict(conditions=dict(on_change_percent=150)), 'conditions.on_change_percent', 'at most 100'),
    (dict(conditions=dict(on_shutdown='maybe')), 'conditions.on_shutdown', 'must be true or false'),
    (dict(domains='web-*'), 'domains', 'must be a list'),
    (dict(domains=['web-*', 5]), 'domains[1]', 'must be a non-empty string'),
    (dict(domains=[{'name': 'x'}]), 'domains[0]', 'must be a non-empty string'),
    (dict(snapshot_type='full'), 'snapshot_type', 'must be one of'),
    (dict(max_chain_length=1), 'max_chain_length', 'must be a whole number >= 2'),
    (dict(auto_consolidate='yes'), 'auto_consolidate', 'must be true or false'),
    (dict(naming='{vm}-{when}'), 'naming', 'unknown field {when}'),
    (dict(naming='{vm'), 'naming', 'is not a valid template'),
])
def test_bad_policies_fail_naming_the_key(change, key, words):
    raw = dict(ISSUE_POLICY, **change)
    with pytest.raises(PolicyError) as e:
        parse_policy(raw, 'web')
    assert e.value.msg.startswith("policy 'web': %s " % key), e.value.msg
    assert words in e.value.msg
    assert e.value.details['key'] == key


def test_bad_policy_name():
    with pytest.raises(PolicyError, match="invalid policy name '../x'"):
        parse_policy({}, '../x')


@pytest.mark.parametrize('text, seconds', [('24h', 86400), ('90m', 5400), ('2d', 172800), ('1d12h', 129600),
                                           ('1w', 604800), ('30s', 30), ('0h', None), ('h', None), ('24', None)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_now():
    assert parse_now('2026-11-25T02:00:00Z') == at(2026, 11, 25, 2)
    assert parse_now('2026-11-25T03:00:00+01:00').timestamp() == at(2026, 11, 25, 2).timestamp()
    assert parse_now('2026-11-25T02:00').tzinfo is not None
    with pytest.raises(PolicyError, match='now: cannot read'):
        parse_now('yesterday')


# -- schedules ---------------------------------------------------------------------------------------
@pytest.mark.parametrize('period, spec, now, slot', [
    ('hourly', True, at(2026, 11, 25, 14, 59, 30), at(2026, 11, 25, 14)),
    ('daily', '02:00', at(2026, 11, 25, 1, 59), at(2026, 11, 24, 2)),
    ('daily', '02:00', at(2026, 11, 25, 2, 0), at(2026, 11, 25, 2)),
    ('weekly', 'sunday 03:00', at(2026, 11, 25, 12), at(2026, 11, 22, 3)),       # a Wednesday
    ('weekly', 'wed 13:00', at(2026, 11, 25, 12), at(2026, 11, 18, 13)),
    ('monthly', 'first-sunday 04:00', at(2026, 11, 25), at(2026, 11, 1, 4)),
    ('monthly', 'first-sunday 04:00', at(2026, 11, 1, 3), at(2026, 10, 4, 4)),
    ('monthly', 'last-friday 22:00', at(2026, 11, 25), at(2026, 10, 30, 22)),
    ('monthly', '15 00:30', at(2026, 1, 10), at(2025, 12, 15, 0, 30)),
    ('yearly', '01-01 05:00', at(2026, 1, 1, 4), at(2025, 1, 1, 5)),
    ('yearly', '12-31 23:00', at(2026, 12, 31, 23, 30), at(2026, 12, 31, 23)),
])
def test_last_slot(period, spec, now, slot):
    assert last_slot(period, spec, now) == slot


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([('hourly', True), ('daily', '02:00'), ('weekly', 'sunday 03:00'),
                        ('monthly', 'first-sunday 04:00'), ('monthly', '28 23:59'), ('yearly', '02-28 12:00')]),
       st.integers(0, 3 * 365 * 86400))
def test_last_slot_is_the_latest_instant_not_after_now(entry, offset):
    period, spec = entry
    now = at(2025, 1, 1) + datetime.timedelta(seconds=offset)
    slot = last_slot(period, spec, now)
    assert slot <= now
    # nothing scheduled between the slot and now: the slot just before now is the same one
    assert last_slot(period, spec, now - datetime.timedelta(seconds=(now - slot).total_seconds() / 2)) == slot
    assert last_slot(period, spec, slot) == slot


def test_due_periods():
    policy = parse_policy(dict(ISSUE_POLICY, schedule=dict(hourly=True, daily='02:00')), 'web')
    now = at(2026, 11, 25, 2, 30)
    assert [p for p, _slot in due_periods(policy, now, {})] == ['hourly', 'daily']
    newest = {'hourly': at(2026, 11, 25, 2).timestamp(), 'daily': at(2026, 11, 24, 2).timestamp()}
    assert due_periods(policy, now, newest) == [('daily', at(2026, 11, 25, 2))]
    newest['daily'] = at(2026, 11, 25, 2).timestamp()
    assert due_periods(policy, now, newest) == []
    policy['retain']['hourly'] = 0      # as in sanoid: a count of 0 means none are taken
    assert [p for p, _slot in due_periods(policy, now, {})] == ['daily']


def test_conditions():
    policy = parse_policy(dict(ISSUE_POLICY), 'web')
    now = at(2026, 11, 25).timestamp()
    assert condition_purposes(policy, now, now - 3600, True, False, 5.0) == []
    got = condition_purposes(policy, now, now - 86400, True, True, 12.5)
    assert [c for c, _why in got] == ['shutdown', 'change', 'uptime']
    assert condition_purposes(policy, now, None, False, False, None) == []      # uptime needs a running VM
    assert [c for c, _why in condition_purposes(policy, now, None, True, False, None)] == ['uptime']
    shutdown = [('shutdown', 'why')]
    assert conditions_kept(policy, [], shutdown) == shutdown
    policy['retain']['conditional'] = 0
    assert conditions_kept(policy, [], shutdown) == []
    assert conditions_kept(policy, [('daily', None)], shutdown) == shutdown    # it serves the daily: kept


# -- names and tags ----------------------------------------------------------------------------------
def test_names_count_per_day():
    now = at(2023, 10, 25, 14, 5)
    template = '{vm}-{purpose}-{date}-{seq}'
    assert render_name(template, 'web-server', 'daily', now, []) == 'web-server-daily-20231025-001'
    existing = ['web-server-daily-20231025-001', 'web-server-hourly-20231025-007', 'web-server-hourly-20231024-009',
                'db-daily-20231025-011', 'manual']
    assert render_name(template, 'web-server', 'hourly', now, existing) == 'web-server-hourly-20231025-008'
    assert render_name('{vm}-{date}{time}', 'vm', 'x', now, []) == 'vm-202310251405'
    assert main_purpose(['hourly', 'daily'], ['shutdown']) == 'daily'
    assert main_purpose([], ['shutdown', 'change']) == 'shutdown'


def test_tags_round_trip():
    epoch = at(2026, 11, 25, 2).timestamp()
    tags = policy_tags('web', ['hourly', 'daily'], ['shutdown'], epoch)
    assert tags == ['nova-policy:web', 'period:hourly', 'period:daily', 'condition:shutdown',
                    'policy-at:20261125T020000Z']
    assert read_tags(tags + ['protected'], 5) == (['web'], ['hourly', 'daily'], ['shutdown'], epoch, True)
    assert read_tags(['update'], 5) == ([], [], [], 5, False)
