# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova_chain consolidation against its peers, and why short chains matter.

- consolidate_offline: the module core (plan, measure, commit, repoint, clean up) vs plain
  `qemu-img commit -d -b <base> <top>` on an identical copy of the same chain.
- consolidate_live: the core's active commit with pivot vs `virsh blockcommit --active --pivot`, on
  the running test guest, identical chains.
- guest_read_<depth>: the guest reading its whole disk through a chain of that depth (data spread
  over every layer) before consolidation ("peer") and after it ("ours"): the ratio is what a flat
  chain saves.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import libvirt

from common import manager, report, timed, virsh  # first: it puts the collection and the test bed on sys.path
import testbed

from ansible_collections.nova.snapshots.plugins.module_utils.operations._consolidate import plan_consolidate  # noqa: E402

ROUNDS = int(os.environ.get('NOVA_BENCH_ROUNDS', '3'))
LAYER_MIB = int(os.environ.get('NOVA_BENCH_LAYER_MIB', '256'))


def qemu(*args):
    subprocess.run([str(a) for a in args], check=True, capture_output=True)


def build_chain(directory, depth, disk_mib, data_mib):
    """base + depth-1 overlays; each image holds its own slice of `data_mib` MiB. Returns the chain, top first."""
    paths = [os.path.join(directory, 'layer%02d.qcow2' % i) for i in range(depth)]
    qemu('qemu-img', 'create', '-q', '-f', 'qcow2', paths[0], '%dM' % disk_mib)
    for below, path in zip(paths, paths[1:]):
        qemu('qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', below, path)
    chunk = data_mib * 2 ** 20 // depth
    for i, path in enumerate(paths):
        qemu('qemu-io', '-f', 'qcow2', '-c', 'write -P %d %d %d' % (i + 1, i * chunk, chunk), path)
    for path in paths:
        os.chmod(path, 0o666)
    return list(reversed(paths))


def guest_on(conn, directory, top, running):
    """A test guest whose vda is the chain ending in `top`."""
    guest = testbed.Guest(conn, disks=1)
    guest.disks = {'vda': top}
    guest.dom.undefine()
    guest.dom = conn.defineXML(testbed.domain_xml(guest.name, guest.disks, guest.dir))
    if running:
        guest.start()
    return guest


def consolidate(guest):
    m = manager(guest)
    try:
        return m.run(False, lambda tree: plan_consolidate(m, tree, max_chain_length=1, method='commit'))
    finally:
        m.hypervisor.close()


def bench_offline(conn):
    ours, peer = [], []
    for round_ in range(ROUNDS):
        work = os.path.join(testbed.WORK_DIR, 'bench-chain')
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        a, b = os.path.join(work, 'a'), os.path.join(work, 'b')
        os.makedirs(a)
        chain = build_chain(a, 4, 4 * LAYER_MIB, 4 * LAYER_MIB)
        shutil.copytree(a, b)
        other = [p.replace(a, b) for p in chain]
        for i, p in enumerate(other[:-1]):     # the copy's headers must name the copy's files
            qemu('qemu-img', 'rebase', '-u', '-f', 'qcow2', '-F', 'qcow2', '-b', other[i + 1], p)
        guest = guest_on(conn, a, chain[0], running=False)
        try:
            runs = [lambda: ours.append(timed(lambda: consolidate(guest))),
                    lambda: peer.append(timed(lambda: qemu('qemu-img', 'commit', '-q', '-d', '-b', other[-1], other[0])))]
            for run in runs if round_ % 2 == 0 else reversed(runs):     # alternate who goes first
                qemu('sync')
                run()
        finally:
            guest.cleanup()
            shutil.rmtree(work, ignore_errors=True)
    report('consolidate_offline', ours, peer)


def bench_live(conn):
    ours, peer = [], []
    for round_ in range(ROUNDS):
        for who in ('ours', 'peer') if round_ % 2 == 0 else ('peer', 'ours'):
            work = os.path.join(testbed.WORK_DIR, 'bench-chain-live')
            shutil.rmtree(work, ignore_errors=True)
            os.makedirs(work)
            chain = build_chain(work, 4, 4 * LAYER_MIB, 4 * LAYER_MIB)
            guest = guest_on(conn, work, chain[0], running=True)
            try:
                if who == 'ours':
                    ours.append(timed(lambda: consolidate(guest)))
                else:
                    peer.append(timed(lambda: virsh('blockcommit', guest.name, 'vda', '--active', '--pivot', '--wait',
                                                    '--base', chain[-1])))
            finally:
                guest.cleanup()
                shutil.rmtree(work, ignore_errors=True)
    report('consolidate_live', ours, peer)


def bench_read(conn):
    for depth in (2, 16, 64):
        work = os.path.join(testbed.WORK_DIR, 'bench-read')
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        chain = build_chain(work, depth, 64, 64)
        guest = guest_on(conn, work, chain[0], running=True)
        try:
            deep = [guest.read_speed("vda", 64) for _round in range(ROUNDS)]
            consolidate(guest)
            flat = [guest.read_speed("vda", 64) for _round in range(ROUNDS)]
        finally:
            guest.cleanup()
            shutil.rmtree(work, ignore_errors=True)
        report('guest_read_64MiB_depth_%d (peer: before, ours: after consolidation)' % depth, flat, deep)


def main(conn):
    bench_offline(conn)
    bench_live(conn)
    bench_read(conn)


if __name__ == '__main__':
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    main(libvirt.open('qemu:///system'))
