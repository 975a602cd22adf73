# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Selecting and querying snapshots for reports: filters and tree queries over plain records."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import calendar
import fnmatch
import time

from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused, SnapshotNotFound

TIME_FORMATS = ('%Y-%m-%dT%H:%M:%SZ', '%Y-%m-%dT%H:%M:%S', '%Y-%m-%d %H:%M:%S', '%Y-%m-%d')


def parse_time(value, option):
    """Seconds since the epoch from a user's time (ISO 8601 in UTC, a date, or seconds); None stays None."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    for fmt in TIME_FORMATS:
        try:
            return calendar.timegm(time.strptime(value, fmt))
        except ValueError:
            pass
    raise Refused("%s: cannot read %r as a time; use 2026-11-25, 2026-11-25T20:00:00Z or seconds since the epoch"
                  % (option, value))


class Filter(object):
    """Which snapshots a report lists: a name glob, tags (all of them), category, type, a time window."""

    def __init__(self, name=None, tags=None, category=None, snapshot_type=None, created_after=None, created_before=None):
        self.name = name
        self.tags = set(tags or [])
        self.category = category
        self.snapshot_type = snapshot_type
        self.after = parse_time(created_after, 'created_after')
        self.before = parse_time(created_before, 'created_before')

    def matches(self, snap):
        if self.name is not None and not fnmatch.fnmatchcase(snap.name, self.name):
            return False
        if not self.tags <= set(snap.tags):
            return False
        if self.category is not None and snap.category != self.category:
            return False
        if self.snapshot_type is not None and snap.snapshot_type != self.snapshot_type:
            return False
        created = snap.creation_time or 0
        return (self.after is None or created >= self.after) and (self.before is None or created < self.before)


def tree_queries(tree, path_to_root=None, descendants=None, common_ancestor=None):
    """path_to_root / descendants / common_ancestor, answered with snapshot names."""
    def snap_id(name):
        snap = tree.by_name(name)
        if snap is None:
            raise SnapshotNotFound(tree.vm_name, name)
        return snap.id

    def name(sid):
        return tree.snapshots[sid].name if sid in tree.snapshots else None

    out = {}
    if path_to_root:
        out['path_to_root'] = [name(i) for i in tree.path_to_root(snap_id(path_to_root))]
    if descendants:
        out['descendants'] = [s.name for s in tree.descendants(snap_id(descendants))]
    if common_ancestor:
        if len(common_ancestor) != 2:
            raise Refused('common_ancestor takes exactly two snapshot names')
        out['common_ancestor'] = name(tree.common_ancestor(*[snap_id(n) for n in common_ancestor]))
    return out
