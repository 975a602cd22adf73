# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Work that copies data: throttled (io_limit) and, across disks, concurrent.

A block job runs inside QEMU, so the jobs of several disks run at the same time when they are all
started before the first is waited for: `run_steps` starts every step, then finishes each and runs
what follows it (records, checksums) in order. The steps of one disk stay in order (one step per
disk per round). Work done by qemu-img (a shut-off VM) runs one step after the other, and so do
block jobs unless parallel_disks is on (see `concurrent`).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused


def check_io_limit(value):
    """`value` (bytes/s) as an int, or None; refused unless positive."""
    if value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n <= 0 or isinstance(value, bool):
        raise Refused('io_limit must be a positive number of bytes per second (such as 52428800 for 50 MiB/s), not %r' % (value,))
    return n


def concurrent(m):
    """Whether the block jobs of several disks run at once: a running VM and parallel_disks on.

    Off by default: QEMU 7.2 (Debian 12) segfaults when block jobs of two disks of one VM run at the
    same time (plain `virsh blockpull` of both disks too; about half of the runs on the test guest,
    none of 10 one disk after the other)."""
    return bool(m.domain.is_active and m.parallel_disks)


def block(m, device):
    """The BlockDevice of `device`, with the manager's job timeout and io_limit."""
    return m.domain.block(device, m.job_timeout, bandwidth=m.io_limit)


class Step(object):
    """One disk's piece of work: start() begins it (returns a PendingJob, or None when it was done
    at once, as qemu-img work is); after() records what it changed once it is finished."""

    def __init__(self, device, start, after=None):
        self.device = device
        self.start = start
        self.after = after


def run_steps(steps, parallel=True):
    """Start every step, then finish each and run its after(), in order.

    A step that fails to start or finish does not leave the others running unwatched: every step
    started is finished before the first error is raised."""
    if not parallel:
        for step in steps:
            _finish(step, step.start())
        return
    started, error = [], None
    for step in steps:
        try:
            started.append((step, step.start()))
        except Exception as e:      # finish what runs, then report (the others' records must be kept)
            error = e
            break
    for step, pending in started:
        try:
            _finish(step, pending)
        except Exception as e:
            error = error or e
    if error is not None:
        raise error


def _finish(step, pending):
    if pending is not None:
        pending.finish()
    if step.after is not None:
        step.after()


def rounds(ops, device=lambda op: op.device):
    """[[op]]: the first op of each disk, then the second of each, ... (order within a disk kept)."""
    queues, order = {}, []
    for op in ops:
        d = device(op)
        if d not in queues:
            queues[d] = []
            order.append(d)
        queues[d].append(op)
    out = []
    while any(queues.values()):
        out.append([queues[d].pop(0) for d in order if queues[d]])
    return out
