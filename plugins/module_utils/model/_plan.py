# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""What an operation would do, worked out before anything changes.

Every operation is a planner: planner(tree) -> Plan. The engine shows the plan (check mode,
diff) or applies it. Plans compose: a task that does several things (branch and switch, take
and prune) is one Plan whose apply runs its parts in order.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class Plan(object):
    """`changed`, human-readable `actions`, diff `before`/`after`, and `apply` (None when unchanged).

    `snapshot` is what the task returns when nothing changes; `extra` holds further result keys.
    """

    def __init__(self, changed, actions=None, before=None, after=None, snapshot=None, apply=None, extra=None):
        self.changed = changed
        self.extra = extra or {}
        self.actions = actions or []
        self.before = before
        self.after = after
        self.snapshot = snapshot
        self.apply = apply

    @classmethod
    def unchanged(cls, snapshot=None, state=None, extra=None):
        return cls(False, before=state, after=state, snapshot=snapshot, extra=extra)

    def then(self, other):
        """This plan followed by `other`: changed when either is; apply runs both, returns the last result."""
        if other is None or not other.changed:
            return self
        if not self.changed:
            return other
        first, second = self.apply, other.apply

        def apply():
            first()
            return second()
        extra = dict(self.extra)
        extra.update(other.extra)
        return Plan(True, self.actions + other.actions, before=self.before, after=other.after,
                    snapshot=other.snapshot, apply=apply, extra=extra)
