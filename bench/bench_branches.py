# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Switching between two running branches vs `virsh save` + `virsh restore` of the same guest.

A switch keeps the RAM of the branch it leaves (a save) and resumes the other one's (a restore),
so the peer is exactly those two virsh commands on an identical twin guest.
"""

from __future__ import annotations

import os

from common import report, timed, virsh  # first: it puts the collection and the test bed on sys.path
import testbed
from ansible_collections.nova.snapshots.plugins.module_utils.operations._branches import TreeManager  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.operations._create import plan_create  # noqa: E402
from common import manager  # noqa: E402

ROUNDS = int(os.environ.get('NOVA_BENCH_ROUNDS', '3'))


def tree_op(guest, op):
    m = manager(guest)
    try:
        return m.run(False, lambda tree: op(TreeManager(m), tree))
    finally:
        m.hypervisor.close()


def main(conn):
    guest, twin = testbed.Guest(conn, disks=2), testbed.Guest(conn, disks=2)
    try:
        guest.start()
        twin.start()
        tree_op(guest, lambda b, t: plan_create(b.m, t, 'start', 'disk_only'))
        tree_op(guest, lambda b, t: b.plan_branch(t, 'other', 'start', switch=True))
        guest.start()                              # the new branch starts shut off (disk-only base): boot it
        mine, peer = [], []
        save_file = os.path.join(twin.dir, 'twin.save')
        for r in range(ROUNDS * 2):
            name = 'main' if r % 2 == 0 else 'other'
            mine.append(timed(lambda: tree_op(guest, lambda b, t: b.plan_switch(t, name))))
            peer.append(timed(lambda: (virsh('save', twin.name, save_file), virsh('restore', save_file))))
            os.unlink(save_file)
        report('switch_running_branches', mine, peer)
    finally:
        guest.cleanup()
        twin.cleanup()
