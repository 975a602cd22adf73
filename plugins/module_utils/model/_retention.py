# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""The retention planner: which of a policy's snapshots to keep and which to prune. Pure Python, no I/O.

Sanoid's rules. Per period with a count N: the newest N snapshots serving that period are kept; an
older one is pruned only when more than N exist and it is older than N periods. A snapshot may
serve several periods (one snapshot taken when the daily and the hourly were both due) and is kept
when any of them keeps it. Snapshots the policy did not create, and ones tagged `protected`, are
never pruned. A period without a count keeps all of its snapshots.

"Older than N periods" uses the shortest length a period can have (a month of 28 days, a year of
365), so that with one snapshot per scheduled instant exactly the newest N of each period stay.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

CONDITIONAL = 'conditional'    # snapshots taken only because of a condition; no age rule
PERIOD_SECONDS = {'hourly': 3600, 'daily': 86400, 'weekly': 7 * 86400,
                  'monthly': 28 * 86400, 'yearly': 365 * 86400}
ORDER = {'hourly': 0, 'daily': 1, 'weekly': 2, 'monthly': 3, 'yearly': 4, CONDITIONAL: 5}
UNITS = {'hourly': 'hours', 'daily': 'days', 'weekly': 'weeks', 'monthly': 'months', 'yearly': 'years'}


class Record(object):
    """What the planner needs to know of one snapshot."""

    __slots__ = ('key', 'time', 'periods', 'owned', 'protected')

    def __init__(self, key, time, periods=(), owned=True, protected=False):
        self.key = key              # unique per planning (the snapshot's name)
        self.time = time            # epoch seconds it was taken for (the policy's `now`)
        self.periods = tuple(periods)
        self.owned = owned          # created by this policy
        self.protected = protected

    def __repr__(self):
        return 'Record(%r, %r, %r, owned=%r, protected=%r)' % (
            self.key, self.time, self.periods, self.owned, self.protected)


class RetentionPlan(object):
    """`keep`: [(record, [rules])] and `prune`: [(record, rule)], both oldest first.
    Records the policy does not own appear in neither."""

    def __init__(self, keep, prune):
        self.keep = keep
        self.prune = prune

    @property
    def prune_keys(self):
        return [r.key for r, _rule in self.prune]


def _ordinal(n):
    suffix = 'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')
    return '%d%s' % (n, suffix)


def plan_retention(records, retain, now):
    """Plan retention of `records` at `now` (epoch seconds) under `retain` (period -> count)."""
    keep_rules, prune_rules, owned = {}, {}, []
    by_period = {}
    for rec in records:
        if not rec.owned:
            continue
        owned.append(rec)
        if rec.protected:
            keep_rules[rec.key] = ['protected']
            continue
        for period in rec.periods or (CONDITIONAL,):
            by_period.setdefault(period, []).append(rec)

    for period in sorted(by_period, key=lambda p: ORDER.get(p, len(ORDER))):
        recs = by_period[period]
        recs.sort(key=lambda r: (r.time, r.key), reverse=True)
        count = retain.get(period)
        if count is None:
            rule = '%s (no retain count: all kept)' % period
            for rec in recs:
                keep_rules.setdefault(rec.key, []).append(rule)
            continue
        min_age = count * PERIOD_SECONDS.get(period, 0)
        for i, rec in enumerate(recs):
            if i < count:
                keep_rules.setdefault(rec.key, []).append('%s %d of %d' % (period, i + 1, count))
            elif period != CONDITIONAL and now - rec.time < min_age:
                keep_rules.setdefault(rec.key, []).append(
                    '%s %d of %d, kept while younger than %d %s' % (period, i + 1, count, count, UNITS[period]))
            else:
                prune_rules.setdefault(rec.key, []).append(
                    '%s: %s newest of %d, %d kept' % (period, _ordinal(i + 1), len(recs), count))

    owned.sort(key=lambda r: (r.time, r.key))
    keep, prune = [], []
    for rec in owned:
        if rec.key in keep_rules:
            keep.append((rec, keep_rules[rec.key]))
        else:
            prune.append((rec, '; '.join(prune_rules[rec.key])))
    return RetentionPlan(keep, prune)
