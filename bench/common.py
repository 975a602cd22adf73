# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared pieces of the benchmarks: the collection's core driven directly, timing, reporting."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The collection as `make setup` installed it (the same copy the modules run), and the test bed.
sys.path.insert(0, os.path.join(TOP, '.build', 'collections'))
sys.path.insert(0, os.path.join(TOP, 'tests', 'integration'))

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._libvirt import Hypervisor  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import QemuImg  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.operations._snapshots import SnapshotManager  # noqa: E402

URI = 'qemu:///system'


def run_command(cmd, environ_update=None):
    """The same contract as AnsibleModule.run_command, for driving the core outside Ansible."""
    env = dict(os.environ, **(environ_update or {}))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def manager(guest):
    return SnapshotManager(Hypervisor(URI), guest.name, guest.storage_dir, QemuImg(run_command))


def run_ours(guest, op):
    """Run one operation through the module core exactly as the module does (plan, lock, apply):
    op(manager, tree) returns its Plan."""
    m = manager(guest)
    try:
        return m.run(False, lambda tree: op(m, tree))
    finally:
        m.hypervisor.close()


def virsh(*args):
    subprocess.run(['virsh', '-q', '-c', URI] + [str(a) for a in args], check=True, capture_output=True)


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def report(name, ours_times, peer_times):
    o, p = statistics.median(ours_times), statistics.median(peer_times)
    print('%s: ours=%.3f peer=%.3f ratio=%.2f' % (name, o, p, o / p), flush=True)
