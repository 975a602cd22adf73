# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Snapshot policies: parsing and validation, schedules, what is due, names and tags. Pure Python, no I/O.

A policy is validated completely before anything acts on it, and every error names the key that is
wrong, so a typo in inventory fails the task before a snapshot is taken or pruned.

Times: schedule times are wall-clock times in the time zone of `now` (the host's local time when
`now` is not given or has no offset). A snapshot's policy time is stored as a UTC tag
(`policy-at:20261125T020000Z`), because `now` can be simulated and libvirt's creation time cannot.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import calendar
import datetime
import re
import string
import time

from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import SNAPSHOT_TYPES, InvalidName, validate_name

PERIODS = ('hourly', 'daily', 'weekly', 'monthly', 'yearly')
# Snapshots taken only because of a condition serve no period; `retain.conditional` bounds them.
CONDITIONAL = 'conditional'
RETAIN_KEYS = PERIODS + (CONDITIONAL,)
CONDITIONS = ('on_shutdown', 'on_change_percent', 'on_uptime')
PURPOSE_OF_CONDITION = {'on_shutdown': 'shutdown', 'on_change_percent': 'change', 'on_uptime': 'uptime'}
POLICY_KEYS = ('snapshot_type', 'schedule', 'retain', 'conditions', 'max_chain_length', 'auto_consolidate', 'naming')
DEFAULT_NAMING = '{vm}-{purpose}-{date}-{seq}'
NAMING_FIELDS = ('vm', 'purpose', 'date', 'time', 'seq')
WEEKDAYS = ('monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday')
ORDINALS = ('first', 'second', 'third', 'fourth', 'last')
DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)   # Feb 29 is refused: not every year has one
DURATION_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 7 * 86400}

TAG_POLICY = 'nova-policy:'
TAG_PERIOD = 'period:'
TAG_CONDITION = 'condition:'
TAG_AT = 'policy-at:'
TAG_PROTECTED = 'protected'
CATEGORY = 'policy'
STAMP = '%Y%m%dT%H%M%SZ'
_STAMP_RX = re.compile(r'(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$')


class PolicyError(Refused):
    pass


def _fail(policy_name, key, problem):
    raise PolicyError("policy '%s': %s %s" % (policy_name, key, problem), key=key)


# -- small parsers ----------------------------------------------------------------------------------
def _hhmm(text):
    m = re.match(r'^(\d{1,2}):(\d{2})$', text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        return None
    return int(m.group(1)), int(m.group(2))


def _weekday(word):
    word = word.lower()
    for i, day in enumerate(WEEKDAYS):
        if word == day or word == day[:3]:
            return i
    return None


def parse_duration(text):
    """'24h', '90m', '2d', '1d12h' -> seconds (> 0), or None when it is not a duration."""
    if not isinstance(text, str):
        return None
    text = text.strip().lower().replace(' ', '')
    if not re.match(r'^(\d+[smhdw])+$', text):
        return None
    seconds = sum(int(n) * DURATION_UNITS[u] for n, u in re.findall(r'(\d+)([smhdw])', text))
    return seconds or None


def parse_slot(period, spec):
    """A period's schedule entry -> (normalized text, parsed form), or None when it is unreadable.

    parsed forms: hourly True; daily (h, m); weekly (weekday, h, m); monthly ('day', d, h, m) or
    ('nth', ordinal index, weekday, h, m); yearly (month, day, h, m).
    """
    if period == 'hourly':
        return ('true', True) if spec is True else None
    if not isinstance(spec, str):
        return None
    words = spec.strip().lower().split()
    if period == 'daily':
        hm = _hhmm(words[0]) if len(words) == 1 else None
        return ('%02d:%02d' % hm, hm) if hm else None
    if len(words) != 2:
        return None
    hm = _hhmm(words[1])
    if hm is None:
        return None
    clock = '%02d:%02d' % hm
    if period == 'weekly':
        day = _weekday(words[0])
        return None if day is None else ('%s %s' % (WEEKDAYS[day], clock), (day,) + hm)
    if period == 'monthly':
        if words[0].isdigit():
            day = int(words[0])
            return ('%d %s' % (day, clock), ('day', day) + hm) if 1 <= day <= 28 else None
        m = re.match(r'^([a-z]+)-([a-z]+)$', words[0])
        if not m or m.group(1) not in ORDINALS or _weekday(m.group(2)) is None:
            return None
        day = _weekday(m.group(2))
        return ('%s-%s %s' % (m.group(1), WEEKDAYS[day], clock), ('nth', ORDINALS.index(m.group(1)), day) + hm)
    if period == 'yearly':
        m = re.match(r'^(\d{1,2})-(\d{1,2})$', words[0])
        if not m:
            return None
        month, day = int(m.group(1)), int(m.group(2))
        if not (1 <= month <= 12 and 1 <= day <= DAYS_IN_MONTH[month - 1]):
            return None
        return ('%02d-%02d %s' % (month, day, clock), (month, day) + hm)
    return None


SLOT_FORMS = {
    'hourly': 'true',
    'daily': '"HH:MM", e.g. "02:00"',
    'weekly': '"<weekday> HH:MM", e.g. "sunday 03:00"',
    'monthly': '"<first|second|third|fourth|last>-<weekday> HH:MM" or "<day 1-28> HH:MM", e.g. "first-sunday 04:00"',
    'yearly': '"MM-DD HH:MM", e.g. "01-01 05:00" (not 02-29)',
}


def parse_now(value):
    """`now` as an aware datetime: ISO 8601; without an offset it is the host's local time."""
    if value is None:
        return datetime.datetime.now().astimezone()
    text = value.strip()
    if text.endswith('Z') or text.endswith('z'):
        text = text[:-1] + '+00:00'
    try:
        dt = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise PolicyError("now: cannot read %r as an ISO 8601 time (e.g. 2026-11-25T02:00:00Z)" % value, key='now')
    return dt if dt.tzinfo is not None else dt.astimezone()


# -- policy ------------------------------------------------------------------------------------------
def has_policy_keys(params):
    return any(params.get(k) is not None for k in POLICY_KEYS)


def _only_known(policy_name, key, value, known):
    if not isinstance(value, dict):
        _fail(policy_name, key, 'must be a dictionary, got %s' % type(value).__name__)
    unknown = sorted(str(k) for k, v in value.items() if k not in known)
    if unknown:
        _fail(policy_name, '%s.%s' % (key, unknown[0]), 'is not a known key; %s takes %s' % (key, ', '.join(known)))
    return dict((k, v) for k, v in value.items() if v is not None)


def parse_policy(raw, name='default'):
    """Validate a policy (a dict of the module's policy options, or one read back from the store)
    and return it normalized: defaults filled in, unset entries dropped, times in one spelling."""
    try:
        validate_name(name, 'policy')
    except InvalidName as e:
        raise PolicyError(e.msg, key='name')
    if not isinstance(raw, dict):
        raise PolicyError("policy '%s' must be a dictionary, got %s" % (name, type(raw).__name__))
    unknown = sorted(str(k) for k in raw if k not in POLICY_KEYS + ('domains', 'name'))
    if unknown:
        _fail(name, unknown[0], 'is not a policy key; a policy takes domains, %s' % ', '.join(POLICY_KEYS))
    out = dict(name=name, domains=_domains(name, raw.get('domains')))

    stype = raw.get('snapshot_type')
    stype = 'disk_only' if stype is None else stype
    if stype not in SNAPSHOT_TYPES:
        _fail(name, 'snapshot_type', 'must be one of %s, got %r' % (', '.join(SNAPSHOT_TYPES), stype))
    out['snapshot_type'] = stype

    schedule = _only_known(name, 'schedule', raw.get('schedule') or {}, PERIODS)
    out['schedule'] = {}
    for period in PERIODS:
        if period not in schedule or schedule[period] is False:
            continue
        slot = parse_slot(period, schedule[period])
        if slot is None:
            _fail(name, 'schedule.%s' % period, 'cannot be read from %r; write %s' % (schedule[period], SLOT_FORMS[period]))
        out['schedule'][period] = True if period == 'hourly' else slot[0]

    retain = _only_known(name, 'retain', raw.get('retain') or {}, RETAIN_KEYS)
    for key, count in retain.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            _fail(name, 'retain.%s' % key, 'must be a whole number >= 0, got %r' % (count,))
    out['retain'] = retain

    conditions = _only_known(name, 'conditions', raw.get('conditions') or {}, CONDITIONS)
    out['conditions'] = {}
    if 'on_shutdown' in conditions:
        if not isinstance(conditions['on_shutdown'], bool):
            _fail(name, 'conditions.on_shutdown', 'must be true or false, got %r' % (conditions['on_shutdown'],))
        if conditions['on_shutdown']:
            out['conditions']['on_shutdown'] = True
    if 'on_change_percent' in conditions:
        pct = conditions['on_change_percent']
        if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 < pct <= 100:
            _fail(name, 'conditions.on_change_percent', 'must be a number above 0 and at most 100, got %r' % (pct,))
        out['conditions']['on_change_percent'] = float(pct)
    if 'on_uptime' in conditions:
        if parse_duration(conditions['on_uptime']) is None:
            _fail(name, 'conditions.on_uptime', "cannot be read from %r; write a duration such as '24h', '90m', '2d' or '1d12h'"
                  % (conditions['on_uptime'],))
        out['conditions']['on_uptime'] = conditions['on_uptime'].strip().lower().replace(' ', '')

    length = raw.get('max_chain_length')
    length = 10 if length is None else length
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        _fail(name, 'max_chain_length', 'must be a whole number >= 2, got %r' % (length,))
    out['max_chain_length'] = length

    auto = raw.get('auto_consolidate')
    auto = False if auto is None else auto
    if not isinstance(auto, bool):
        _fail(name, 'auto_consolidate', 'must be true or false, got %r' % (auto,))
    out['auto_consolidate'] = auto

    naming = raw.get('naming')
    out['naming'] = _naming(name, DEFAULT_NAMING if naming is None else naming)
    return out


def _domains(policy_name, domains):
    if domains is None:
        return []
    if isinstance(domains, str) or not isinstance(domains, list):
        _fail(policy_name, 'domains', 'must be a list of domain names or globs, got %s' % type(domains).__name__)
    for i, pattern in enumerate(domains):
        if not isinstance(pattern, str) or not pattern:
            _fail(policy_name, 'domains[%d]' % i, 'must be a non-empty string (a domain name or a glob such as web-*), got %r'
                  % (pattern,))
    return list(domains)


def _naming(policy_name, template):
    if not isinstance(template, str) or not template:
        _fail(policy_name, 'naming', 'must be a non-empty string such as %r' % DEFAULT_NAMING)
    try:
        fields = [(f, spec, conv) for _lit, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        _fail(policy_name, 'naming', 'is not a valid template (%s): %r' % (e, template))
    for field, spec, conv in fields:
        if field not in NAMING_FIELDS or spec or conv:
            _fail(policy_name, 'naming', 'has an unknown field {%s}; it may use %s' % (
                field + ('!' + conv if conv else '') + (':' + spec if spec else ''),
                ', '.join('{%s}' % f for f in NAMING_FIELDS)))
    return template


# -- schedules --------------------------------------------------------------------------------------
def _nth_weekday(year, month, ordinal, weekday):
    if ordinal == 4:     # last
        last = calendar.monthrange(year, month)[1]
        day = last - (datetime.date(year, month, last).weekday() - weekday) % 7
    else:
        day = 1 + (weekday - datetime.date(year, month, 1).weekday()) % 7 + 7 * ordinal
    return day


def _prev_month(year, month):
    return (year - 1, 12) if month == 1 else (year, month - 1)


def last_slot(period, spec, now):
    """The latest instant <= now (aware datetime) at which `period` is scheduled by `spec`."""
    form = parse_slot(period, spec)[1]
    base = now.replace(second=0, microsecond=0)
    if period == 'hourly':
        return base.replace(minute=0)
    if period == 'daily':
        slot = base.replace(hour=form[0], minute=form[1])
        return slot if slot <= now else slot - datetime.timedelta(days=1)
    if period == 'weekly':
        day, h, m = form
        slot = (base - datetime.timedelta(days=(now.weekday() - day) % 7)).replace(hour=h, minute=m)
        return slot if slot <= now else slot - datetime.timedelta(days=7)
    if period == 'yearly':
        month, day, h, m = form
        slot = base.replace(month=month, day=day, hour=h, minute=m)
        return slot if slot <= now else slot.replace(year=slot.year - 1)

    def in_month(year, month):
        if form[0] == 'day':
            day = form[1]
        else:
            day = _nth_weekday(year, month, form[1], form[2])
        return base.replace(year=year, month=month, day=day, hour=form[-2], minute=form[-1])
    slot = in_month(now.year, now.month)
    return slot if slot <= now else in_month(*_prev_month(now.year, now.month))


def due_periods(policy, now, newest):
    """[(period, slot)] of the scheduled periods that are due at `now`.

    A period is due when its last scheduled instant is <= now and the newest snapshot of this
    policy serving it (`newest`: period -> epoch seconds) is older than that instant. A period
    with `retain: 0` is never taken (as in sanoid).
    """
    due = []
    for period in PERIODS:
        spec = policy['schedule'].get(period)
        if spec is None or policy['retain'].get(period) == 0:
            continue
        slot = last_slot(period, spec, now)
        have = newest.get(period)
        if have is None or have < slot.timestamp():
            due.append((period, slot))
    return due


def condition_purposes(policy, now_epoch, last_epoch, running, queued, change_percent):
    """[(purpose, reason)] of the conditions that hold. Inputs are observations made by the caller:
    `last_epoch` the newest snapshot of this policy (None: none yet), `queued` whether a shutdown is
    queued for the domain, `change_percent` the share of the disk written since (None: unknown)."""
    cond = policy['conditions']
    out = []
    if cond.get('on_shutdown') and queued:
        out.append(('shutdown', 'the domain shut down (queued by the libvirt hook)'))
    threshold = cond.get('on_change_percent')
    if threshold is not None and change_percent is not None and change_percent >= threshold:
        out.append(('change', '%.1f%% of the disk written since the last snapshot (threshold %g%%)'
                    % (change_percent, threshold)))
    if cond.get('on_uptime') and running:
        limit = parse_duration(cond['on_uptime'])
        if last_epoch is None or now_epoch - last_epoch >= limit:
            out.append(('uptime', 'running and no snapshot of this policy for %s' % cond['on_uptime']))
    return out


def conditions_kept(policy, due, conditions):
    """The conditions to act on: none when no period is due and `retain.conditional` is 0, because
    that snapshot would be pruned at once (like a period's 0, it means: do not take them)."""
    if conditions and not due and policy['retain'].get(CONDITIONAL) == 0:
        return []
    return conditions


# -- names and tags ----------------------------------------------------------------------------------
def main_purpose(periods, conditions):
    """The purpose a name shows: the longest period due, else the first condition."""
    for period in reversed(PERIODS):
        if period in periods:
            return period
    return conditions[0]


def render_name(template, vm, purpose, now, existing):
    """The snapshot name for `now`; {seq} counts per day from the highest one already there."""
    values = dict(vm=vm, purpose=purpose, date=now.strftime('%Y%m%d'), time=now.strftime('%H%M'))
    if '{seq}' in template:
        pattern = re.escape(template)
        for field in ('vm', 'date'):
            pattern = pattern.replace(re.escape('{%s}' % field), re.escape(values[field]))
        pattern = pattern.replace(re.escape('{purpose}'), '.+?').replace(re.escape('{time}'), r'\d{4}')
        pattern = pattern.replace(re.escape('{seq}'), r'(\d{3,})', 1).replace(re.escape('{seq}'), r'\d{3,}')
        rx = re.compile('^%s$' % pattern)
        seqs = [int(m.group(1)) for m in (rx.match(n) for n in existing) if m]
        values['seq'] = '%03d' % (max(seqs) + 1 if seqs else 1)
    name = template.format(**values)
    validate_name(name)
    return name


def stamp(epoch):
    return time.strftime(STAMP, time.gmtime(int(epoch)))


def policy_tags(policy_name, periods, purposes, epoch):
    return ([TAG_POLICY + policy_name] + [TAG_PERIOD + p for p in periods]
            + [TAG_CONDITION + c for c in purposes] + [TAG_AT + stamp(epoch)])


def read_tags(tags, creation_time):
    """(policy names, periods, condition purposes, policy time, protected) from a snapshot's tags."""
    policies, periods, conditions, at = [], [], [], None
    for tag in tags:
        if tag.startswith(TAG_POLICY):
            policies.append(tag[len(TAG_POLICY):])
        elif tag.startswith(TAG_PERIOD):
            periods.append(tag[len(TAG_PERIOD):])
        elif tag.startswith(TAG_CONDITION):
            conditions.append(tag[len(TAG_CONDITION):])
        elif tag.startswith(TAG_AT):
            # by hand: time.strptime costs more than all the rest of planning for a big tree
            m = _STAMP_RX.match(tag, len(TAG_AT))
            if m:
                at = calendar.timegm(tuple(int(x) for x in m.groups()))
    return policies, periods, conditions, at if at is not None else (creation_time or 0), TAG_PROTECTED in tags
