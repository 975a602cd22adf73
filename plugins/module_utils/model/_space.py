# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Sizes and the order space is freed in. Pure Python, no I/O.

`parse_size` reads what a user writes ('10GB', '512MiB', '1.5G', 1048576); `ranges_minus` is the
arithmetic behind "what deleting a snapshot frees" (its layer's data that the image above does not
cover must be copied up); `cleanup_order` is the order nova_storage state=cleaned deletes in.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused

_UNITS = {
    '': 1, 'b': 1,
    'k': 1024, 'kb': 1000, 'kib': 1024,
    'm': 1024 ** 2, 'mb': 1000 ** 2, 'mib': 1024 ** 2,
    'g': 1024 ** 3, 'gb': 1000 ** 3, 'gib': 1024 ** 3,
    't': 1024 ** 4, 'tb': 1000 ** 4, 'tib': 1024 ** 4,
}
_SIZE = re.compile(r'^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$')


def parse_size(value, what='free_space'):
    """Bytes in `value`: an int, or a number with a unit (B, K/KiB, KB, M/MiB, MB, G/GiB, GB, T/TiB, TB).

    KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB and the bare K/M/G/T powers of 1024 (as qemu-img)."""
    if isinstance(value, bool):
        raise Refused('%s must be a size such as 10GB or 512MiB, not %r' % (what, value))
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.match(str(value))
        if not m or m.group(2).lower() not in _UNITS:
            raise Refused("%s must be a size such as '10GB', '512MiB' or a number of bytes, not %r (units: %s)"
                          % (what, value, 'B, K, KB, KiB, M, MB, MiB, G, GB, GiB, T, TB, TiB'))
        n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise Refused('%s must be more than 0 bytes, not %r' % (what, value))
    return n


def human(n):
    """A byte count the way a person reads it ('12.0 MiB')."""
    n = float(n or 0)
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(n) < 1024 or unit == 'TiB':
            return '%d B' % n if unit == 'B' else '%.1f %s' % (n, unit)
        n /= 1024.0


def ranges_minus(a, b):
    """Bytes of the sorted, disjoint (start, length) ranges `a` not covered by those of `b`."""
    total, j = 0, 0
    for start, length in a:
        pos, end = start, start + length
        while j < len(b) and b[j][0] + b[j][1] <= pos:
            j += 1
        k = j
        while pos < end:
            if k >= len(b) or b[k][0] >= end:
                total += end - pos
                break
            bs, be = b[k][0], b[k][0] + b[k][1]
            if bs > pos:
                total += bs - pos
            pos = max(pos, be)
            k += 1
    return total


class Candidate(object):
    """A snapshot the cleanup may delete: `freed` is the estimate of the bytes deleting it frees."""

    def __init__(self, domain, name, time, freed, pruned_by_policy=False, policy=None):
        self.domain = domain
        self.name = name
        self.time = time
        self.freed = freed
        self.pruned_by_policy = pruned_by_policy
        self.policy = policy

    def to_dict(self):
        return dict(domain=self.domain, name=self.name, freed_estimate=self.freed, policy=self.policy,
                    beyond_retention=self.pruned_by_policy)


def cleanup_order(candidates):
    """Snapshots their policy's retention would prune anyway first, then the rest; oldest first in each."""
    return sorted(candidates, key=lambda c: (not c.pruned_by_policy, c.time or 0, c.domain, c.name))


def choose(candidates, shortfall):
    """(chosen, estimated bytes) taken in order until the estimates cover `shortfall`; candidates that
    free nothing are never chosen."""
    chosen, total = [], 0
    for c in candidates:
        if total >= shortfall:
            break
        if c.freed > 0:
            chosen.append(c)
            total += c.freed
    return chosen, total
