# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova_snapshot_verify's read speed against the plain checksum tools, over the same frozen layers.

A shut-off test guest gets NOVA_BENCH_VERIFY_LAYERS disk-only snapshots, each freezing a layer of
NOVA_BENCH_VERIFY_LAYER_MIB MiB of data (3 x 1 GiB by default), then, in alternating rounds:

- verify_throughput_sha256: the module core's whole verification of those snapshots (qemu-img info
  and check of each layer, backing links, metadata, the sha256 of every frozen file) vs
  `sha256sum` over the same files. Goal: ratio <= 1.05.
- verify_throughput_blake3: the same with checksum=blake3 vs `sha256sum` (goal: faster, ratio < 1),
  and vs `b3sum` when it is installed.
- verify_throughput_sha256_vs_openssl: the same verification vs `openssl dgst -sha256` (the engine
  hashlib uses, with none of verification's checks): what the checks themselves cost.
- record_cost_sha256: what checksum=sha256 adds to taking a snapshot that freezes one such layer:
  creation plus recording ("ours") vs creation alone ("peer").

The files fit in the page cache and are read once before timing, so every round reads them from
memory: the figures are the hashing engines' speed, the bound when the disk is faster than they are.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time

import libvirt

from common import URI, manager, report, timed  # first: it puts the collection and the test bed on sys.path
import testbed

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._checksum import HAS_BLAKE3  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.operations._create import plan_create  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.operations._verify import (  # noqa: E402
    Verifier,
    frozen_files,
    record_checksums,
)

ROUNDS = int(os.environ.get('NOVA_BENCH_ROUNDS', '3'))
LAYERS = int(os.environ.get('NOVA_BENCH_VERIFY_LAYERS', '3'))
LAYER_MIB = int(os.environ.get('NOVA_BENCH_VERIFY_LAYER_MIB', '1024'))


def fill(path, pattern, mib):
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P %d 0 %dM' % (pattern, mib), path],
                   check=True, capture_output=True)


def build(conn):
    """A shut-off guest whose store holds LAYERS snapshots, each freezing LAYER_MIB MiB of data."""
    guest = testbed.Guest(conn, disks=1, disk_mib=LAYER_MIB)
    fill(guest.disks['vda'], 1, LAYER_MIB)
    create_times = []
    for i in range(1, LAYERS + 1):
        m = manager(guest)
        try:
            create_times.append(timed(lambda: m.run(False, lambda tree, n=i: plan_create(m, tree, 's%d' % n, 'disk_only'))))
            top = [d.source_file for d in m.domain_xml(inactive=True).disks if d.source_file][0]
        finally:
            m.hypervisor.close()
        if i < LAYERS:
            fill(top, (i + 1) % 250 + 1, LAYER_MIB)
    return guest, create_times


def verify_once(guest, algorithm):
    m = manager(guest)
    try:
        tree, _adopted = m.load(write=False)
        reports, _problems = Verifier(m, algorithm).verify(tree, tree.ordered())
    finally:
        m.hypervisor.close()
    bad = [r.name for r in reports if r.problems]
    assert not bad, 'verification found problems in %s' % bad
    return sum(r.bytes_read for r in reports)


def tool(name, files):
    tool_args([name], files)


def tool_args(argv, files):
    subprocess.run(argv + files, check=True, capture_output=True)


def rate(nbytes, seconds):
    return '%.0f MiB/s' % (nbytes / seconds / 2 ** 20)


def compare(label, ours_fn, peer_fn, nbytes):
    ours, peer = [], []
    for _round in range(ROUNDS):
        ours.append(timed(ours_fn))
        peer.append(timed(peer_fn))
    report(label, ours, peer)
    detail = (label, nbytes, rate(nbytes, statistics.median(ours)), rate(nbytes, statistics.median(peer)))
    print('# %s: bytes=%d ours=%s peer=%s' % detail, flush=True)


def main(conn):
    guest, create_times = build(conn)
    try:
        m = manager(guest)
        try:
            tree, _a = m.load(write=False)
            files = [p for s in tree.ordered() for p, _f in frozen_files(s)]
        finally:
            m.hypervisor.close()
        nbytes = sum(os.path.getsize(f) for f in files)
        print('# verify: %d frozen layers, %.2f GiB, %d rounds, page cache warm' % (len(files), nbytes / 2 ** 30, ROUNDS),
              flush=True)
        tool('sha256sum', files)            # warm the page cache for both sides
        compare('verify_throughput_sha256', lambda: verify_once(guest, 'sha256'), lambda: tool('sha256sum', files), nbytes)
        if shutil.which('openssl'):
            # the hashing engine Python's hashlib uses, without any of verification's checks
            compare('verify_throughput_sha256_vs_openssl', lambda: verify_once(guest, 'sha256'),
                    lambda: tool_args(['openssl', 'dgst', '-sha256'], files), nbytes)
        if HAS_BLAKE3:
            compare('verify_throughput_blake3', lambda: verify_once(guest, 'blake3'), lambda: tool('sha256sum', files),
                    nbytes)
            if shutil.which('b3sum'):
                compare('verify_throughput_blake3_vs_b3sum', lambda: verify_once(guest, 'blake3'),
                        lambda: tool('b3sum', files), nbytes)
            else:
                print('# b3sum is not installed: no blake3 peer', flush=True)
        else:
            print('# the blake3 Python package is not installed: no blake3 figures', flush=True)
        # What recording at creation adds: creating the last snapshot (it froze one layer) vs recording it.
        m = manager(guest)
        try:
            tree, _a = m.load(write=False)
            last = tree.ordered()[-1]
            start = time.perf_counter()
            with m.store.lock():
                record_checksums(m, tree, last, 'sha256')
            extra = time.perf_counter() - start
        finally:
            m.hypervisor.close()
        create = statistics.median(create_times)
        size = sum(os.path.getsize(p) for p, _f in frozen_files(last))
        report('record_cost_sha256', [create + extra], [create])
        print('# record_cost_sha256: frozen=%d bytes create=%.3fs record=%.3fs (%s)' % (size, create, extra, rate(size, extra)),
              flush=True)
    finally:
        guest.cleanup()


if __name__ == '__main__':
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    main(libvirt.open(URI))
