# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Block jobs of the running test guest: io_limit held, and two disks at once against one after the other.

- io_limit_pull: a block pull of NOVA_BENCH_JOBS_MIB MiB through nova_chain's core with io_limit; ours
  is the rate the job really ran at (its duration watched through blockJobInfo), peer the limit asked
  for. A ratio at or under 1.10 is the limit held within 10 %.
- two_disks_vs_one: consolidating two disks of NOVA_BENCH_JOBS_MIB MiB each (no io_limit), one after
  the other (the default) against one disk alone.
- parallel_disks: the two disks' jobs at once (ours, parallel_disks on) against one after the other
  (peer). QEMU 7.2 crashes in some of these rounds; they are counted in a comment line, the VM is
  started again, and the line has the rounds that finished.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import libvirt

from common import manager, report, virsh  # first: it puts the collection and the test bed on sys.path
import testbed

from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NovaError  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.operations._consolidate import chain_change  # noqa: E402

ROUNDS = int(os.environ.get('NOVA_BENCH_ROUNDS', '3'))
DATA_MIB = int(os.environ.get('NOVA_BENCH_JOBS_MIB', os.environ.get('NOVA_BENCH_LAYER_MIB', '256')))
MIB = 2 ** 20


def new_layer(guest, n):
    """An anonymous overlay per disk (virsh, no metadata): the data below it is pulled up by the next run."""
    specs = []
    for dev in sorted(guest.disks):
        specs += ['--diskspec', '%s,file=%s' % (dev, os.path.join(guest.dir, 'r%d-%s.qcow2' % (n, dev)))]
    virsh('snapshot-create-as', guest.name, 'r%d' % n, '--disk-only', '--no-metadata', '--atomic', *specs)


def data_guest(conn, disks):
    guest = testbed.Guest(conn, disks=disks, disk_mib=max(64, DATA_MIB * 2))
    for dev, path in guest.disks.items():
        subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 5 0 %dM' % DATA_MIB, path], check=True, capture_output=True)
    guest.start()
    return guest


def consolidate(guest, io_limit=None, parallel=True):
    """Seconds the core's consolidation takes, and {dev: seconds its block job ran}."""
    m = manager(guest)
    m.io_limit, m.parallel_disks = io_limit, parallel
    seen, stop = {}, threading.Event()

    def watch():
        while not stop.is_set():
            now = time.monotonic()
            for dev in guest.disks:
                try:
                    info = guest.dom.blockJobInfo(dev, 0)
                except libvirt.libvirtError:
                    info = None
                if info:
                    seen[dev] = (seen.get(dev, (now, now))[0], now)
            time.sleep(0.01)
    watcher = threading.Thread(target=watch)
    watcher.start()
    start = time.perf_counter()
    try:
        chain_change(m, False, 'consolidated', max_chain_length=1, method='pull')
    finally:
        took = time.perf_counter() - start
        stop.set()
        watcher.join()
        m.hypervisor.close()
    return took, dict((d, b - a) for d, (a, b) in seen.items())


def main():
    conn = libvirt.open(testbed.URI)
    made = []
    try:
        limit = max(DATA_MIB // 4, 1) * MIB      # about 4 s per pull
        one = data_guest(conn, 1)
        made.append(one)
        rates, singles = [], []
        for n in range(ROUNDS):
            new_layer(one, n)
            _took, jobs = consolidate(one, io_limit=limit)
            rates.append(DATA_MIB * MIB / jobs['vda'] / MIB)
            new_layer(one, 100 + n)
            singles.append(consolidate(one)[0])
        report('io_limit_pull (MiB/s run, MiB/s asked)', rates, [limit / MIB] * ROUNDS)
        two = data_guest(conn, 2)
        made.append(two)
        par, ser, crashed = [], [], 0
        for n in range(ROUNDS):
            new_layer(two, 100 + n)
            ser.append(consolidate(two, parallel=False)[0])
            new_layer(two, n)
            try:
                par.append(consolidate(two, parallel=True)[0])
            except NovaError as e:
                if two.state == 'running':
                    raise
                crashed += 1        # QEMU 7.2 segfaults with two disks' jobs at once (parallel_disks' docs)
                print('# parallel_disks round %d: the VM died (%s); restarted on its disks' % (n, e.msg[:120]), flush=True)
                two.start()
        print('# parallel_disks: QEMU crashed in %d of %d rounds with both disks\' jobs at once' % (crashed, ROUNDS), flush=True)
        report('two_disks_vs_one (2 disks one after the other, 1 disk)', ser, singles)
        if par:
            report('parallel_disks (2 disks at once, one after the other)', par, ser[:len(par)])
    finally:
        for guest in made:
            guest.cleanup()
        conn.close()


if __name__ == '__main__':
    main()
