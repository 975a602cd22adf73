# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make bench`: every benchmark, one line per comparison: `<name>: ours=<s> peer=<s> ratio=<ours/peer>`.

`run.py NAME...` runs only the benchmarks named (`run.py --list` names them all)."""

from __future__ import annotations

import sys

import libvirt

import bench_branches
import bench_chain
import bench_encryption
import bench_export
import bench_fleet
import bench_jobs
import bench_policy
import bench_snapshot
import bench_tree
import bench_verify


def _conn():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt.open('qemu:///system')


# in the order `make bench` runs them
BENCHMARKS = {
    'snapshot': bench_snapshot.main,
    'branches': lambda: bench_branches.main(_conn()),
    'tree': bench_tree.main,
    'chain': lambda: bench_chain.main(_conn()),
    'policy': lambda: bench_policy.main(_conn()),
    'export': lambda: bench_export.main(_conn()),
    'verify': lambda: bench_verify.main(_conn()),
    'encryption': lambda: bench_encryption.main(_conn()),
    'fleet': bench_fleet.main,
    'jobs': bench_jobs.main,
}


def main(names):
    if names == ['--list']:
        print('\n'.join(BENCHMARKS))
        return 0
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        sys.stderr.write('no benchmark %s; there are: %s\n' % (', '.join(unknown), ', '.join(BENCHMARKS)))
        return 2
    print('# medians of %d alternating rounds on the running test guest (TCG, 192 MiB RAM, 2 x 64 MiB qcow2)'
          % bench_snapshot.ROUNDS, flush=True)
    for name in names or list(BENCHMARKS):
        BENCHMARKS[name]()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
