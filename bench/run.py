# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make bench`: every benchmark, one line per comparison: `<name>: ours=<s> peer=<s> ratio=<ours/peer>`."""

from __future__ import annotations

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

if __name__ == '__main__':
    print('# medians of %d alternating rounds on the running test guest (TCG, 192 MiB RAM, 2 x 64 MiB qcow2)'
          % bench_snapshot.ROUNDS, flush=True)
    bench_snapshot.main()
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    bench_branches.main(libvirt.open('qemu:///system'))
    bench_tree.main()
    bench_chain.main(libvirt.open('qemu:///system'))
    bench_policy.main(libvirt.open('qemu:///system'))
    bench_export.main(libvirt.open('qemu:///system'))
    bench_verify.main(libvirt.open('qemu:///system'))
    bench_encryption.main(libvirt.open('qemu:///system'))
    bench_fleet.main()
    bench_jobs.main()
