# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""The retention planner: which of a policy's snapshots to keep and which to prune. Pure Python, no I/O.

Sanoid's rules. Per period with a count N: the newest N snapshots serving that period are kept and
the older ones are pruned. A snapshot may serve several periods (one snapshot taken when the daily
and the hourly were both due) and is kept when any of them keeps it. Snapshots the policy did not
create, and ones tagged `protected`, are never pruned. A period without a count keeps all of its
snapshots.

There is no age rule ("kept while younger than N periods"): a snapshot serves the scheduled
instant it was due for, not the moment it was taken, so a first run's catch-up (taken at 00:30 for
the previous day's 02:00) was held back by it as a third daily of `daily: 2` for up to two days.
The due rule already makes one snapshot per scheduled instant, so the newest N are exactly the
last N instants taken.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

CONDITIONAL = 'conditional'    # snapshots taken only because of a condition
ORDER = {'hourly': 0, 'daily': 1, 'weekly': 2, 'monthly': 3, 'yearly': 4, CONDITIONAL: 5}


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
    """Plan retention of `records` under `retain` (period -> count).

    `now` (epoch seconds) is the instant enforced; the rules do not depend on it (no age rule), it is
    kept so that callers need not change."""
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
        for i, rec in enumerate(recs):
            if i < count:
                keep_rules.setdefault(rec.key, []).append('%s %d of %d' % (period, i + 1, count))
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
