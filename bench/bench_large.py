# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make bench-large`: the collection at the sizes users run, against the peer doing the same work.

Every line is `name: ours=<s> peer=<s> ratio=<ours/peer> rss_mib=<ours> peer_rss_mib=<peer> ...`,
one round each (each figure is large enough that a round is seconds, not milliseconds), and each
operation runs at three sizes, followed by a `# growth` line: time ~ size^k, k = 1 is linear.

NOVA_BENCH_LARGE=tiny runs every part at toy sizes (the smoke test in `make test`);
NOVA_BENCH_LARGE_ONLY=vm,delete,... runs some parts (`pooled`, eight creations with RAM each side at
the smallest RAM size, only when named); NOVA_BENCH_LARGE_JSON=<file> writes every
figure there (bench/plot.py draws them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import libvirt
from lxml import etree

from common import URI, manager  # first: it puts the collection on sys.path
import testbed
import large
from large import MIB, Base, dirty, growth, large_guest, live_write, measured, peer, qemu, report, write_pattern
from bench_chain import build_chain, guest_on

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import byte_window  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.model._query import Filter  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.operations._branches import TreeManager  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.operations._consolidate import plan_consolidate  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.operations._create import plan_create  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.operations._delete import plan_delete  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.operations._export import Exporter  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.operations._info import domain_report  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.operations._revert import plan_revert  # noqa: E402

SCALE = os.environ.get('NOVA_BENCH_LARGE', 'full')
PROFILES = {
    # disk: virtual MiB of every large disk; ram: MiB of dirty RAM; layer: MiB of the deleted layer;
    # merge: MiB each branch changes; consolidate: MiB per layer of a 16-layer chain; read: (MiB read,
    # depths); tree: snapshot counts; export: MiB of data in the exported disk.
    'full': dict(disk=10240, ram=[1024, 2048, 4096], layer=[256, 1024, 2048], merge=[128, 256, 512],
                 consolidate=[64, 128, 256], read=(1024, [1, 8, 16, 32, 64]), tree=[10, 100, 500],
                 export=[256, 1024, 2048], delete_live=True, revert_disk_only=True),
    # the smoke test's: one size each, and without the parts that only boot more guests
    'tiny': dict(disk=256, ram=[16], layer=[16], merge=[8], consolidate=[1], read=(16, [2]), tree=[4],
                 export=[16], delete_live=False, revert_disk_only=False),
}
P = PROFILES[SCALE]
SWITCH_ROUNDS = 4 if SCALE == 'full' else 2
ONLY = [w for w in os.environ.get('NOVA_BENCH_LARGE_ONLY', '').split(',') if w]


def size_name(mib):
    return '%dMiB' % mib if mib < 1024 or mib % 1024 else '%dGiB' % (mib // 1024)


def core(guest, planner):
    """One module run's core (plan, lock, apply) on `guest`, in this process."""
    m = manager(guest)
    try:
        return m.run(False, lambda tree: planner(m, tree))
    finally:
        m.hypervisor.close()


def ours(guest, planner):
    return measured(lambda: core(guest, planner))


def virsh(*args):
    return ['virsh', '-q', '-c', URI] + [str(a) for a in args]


def record(guest, name):
    m = manager(guest)
    try:
        tree, _adopted = m.load(write=False)
        return m.describe(tree, tree.by_name(name))
    finally:
        m.hypervisor.close()


def top_of(guest):
    return re.search(r"<source file='([^']+)'", guest.dom.XMLDesc(0)).group(1)


def diskspecs(guest, directory, tag):
    return ['--diskspec', 'vda,file=%s/%s-vda.qcow2,snapshot=external' % (directory, tag)]


# -- creation, revert and branch switch of a VM with GiB of dirty RAM ---------------------------------

def bench_vm(conn, base, ram_mib, times):
    guest, twin = large_guest(conn, base, ram_mib), large_guest(conn, base, ram_mib)
    sz = size_name(ram_mib)
    try:
        guest.start()
        twin.start()
        filled = dirty([guest, twin], ram_mib)
        print('# vm %s: two guests of %d MiB RAM, %s read into each one\'s page cache in %.1f s'
              % (sz, ram_mib + large.GUEST_OVERHEAD_MIB, sz, filled), flush=True)
        tdir = os.path.join(twin.dir, 'virsh')
        os.makedirs(tdir)

        def line(op, o, p):
            # outside_libvirt_s: what the module adds around libvirt's calls (the same calls the peer makes)
            report('%s_ram_%s' % (op, sz), o, p, ram_mib=ram_mib,
                   outside_libvirt_s='%.3f' % (o.seconds - o.libvirt) if o.libvirt is not None else 'n/a')
            times.setdefault(op, []).append((ram_mib, o.seconds))

        line('create_internal', ours(guest, lambda m, t: plan_create(m, t, 'int', 'internal')),
             peer(virsh('snapshot-create-as', twin.name, 'int', '--atomic')))
        line('revert_internal', ours(guest, lambda m, t: plan_revert(m, t, 'int', force=True)),
             peer(virsh('snapshot-revert', twin.name, 'int')))
        report('delete_internal_ram_%s' % sz, ours(guest, lambda m, t: plan_delete(m, t, 'int')),
               peer(virsh('snapshot-delete', twin.name, 'int')), ram_mib=ram_mib)
        line('create_disk_only', ours(guest, lambda m, t: plan_create(m, t, 'disk', 'disk_only')),
             peer(virsh(*['snapshot-create-as', twin.name, 'disk', '--atomic', '--disk-only']
                        + diskspecs(twin, tdir, 'disk'))))
        for kind in ('external', 'memory'):
            line('create_%s' % kind, ours(guest, lambda m, t, k=kind: plan_create(m, t, k, k)),
                 peer(virsh(*['snapshot-create-as', twin.name, kind, '--atomic', '--live', '--memspec',
                              'file=%s/%s.save,snapshot=external' % (tdir, kind)] + diskspecs(twin, tdir, kind))))
        # revert to the memory snapshot; the peer by hand: a fresh overlay on the same frozen image and
        # `virsh restore` of the memory file with its XML pointed at it
        mem_file = os.path.join(tdir, 'memory.save')
        xml = etree.fromstring(conn.saveImageGetXMLDesc(mem_file, 0).encode())
        overlay = os.path.join(tdir, 'revert-vda.qcow2')
        disk = xml.xpath("devices/disk[target/@dev='vda']")[0]
        disk.find('source').set('file', overlay)
        for bs in disk.findall('backingStore'):
            disk.remove(bs)
        xml_file = os.path.join(tdir, 'restore.xml')
        with open(xml_file, 'wb') as f:
            f.write(etree.tostring(xml))
        line('revert_memory', ours(guest, lambda m, t: plan_revert(m, t, 'memory', force=True)),
             peer(virsh('destroy', twin.name),
                  ['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', os.path.join(tdir, 'external-vda.qcow2'),
                   overlay],
                  virsh('restore', mem_file, '--xml', xml_file, '--running')))
        guest.note_restored()
        # branch switch: 'other' starts at the disk-only snapshot and boots; its RAM is made dirty too,
        # then each switch keeps the RAM of the branch it leaves and resumes the other one's
        core(guest, lambda m, t: TreeManager(m).plan_branch(t, 'other', 'disk', switch=True))
        guest.start()
        dirty([guest], ram_mib)
        # Four switches each way, which side goes first alternating (A B B A ...): single rounds of GiB
        # saves swing 2x under load, and the side that goes second finds the disk busier.
        save = os.path.join(tdir, 'twin.save')
        mine, theirs = [], []

        def switch(name):
            mine.append(ours(guest, lambda m, t: TreeManager(m).plan_switch(t, name)))

        def save_restore():
            theirs.append(peer(virsh('save', twin.name, save), virsh('restore', save)))
            os.unlink(save)
        for i in range(SWITCH_ROUNDS):
            name = ('main', 'other')[i % 2]
            if i % 4 in (0, 3):
                switch(name)
                save_restore()
            else:
                save_restore()
                switch(name)
        own = statistics.median(x.seconds - x.libvirt for x in mine)
        line('switch_running_branches', large.Measure(statistics.median(x.seconds for x in mine), max(x.rss_mib for x in mine),
                                                      statistics.median(x.seconds for x in mine) - own),
             large.Measure(statistics.median(x.seconds for x in theirs), max(x.rss_mib for x in theirs)))
        print('# switch_running_branches_ram_%s: medians of %d; ours outside libvirt\'s save and restore %.3f s '
              '(plan, define, store, removing the spent RAM file); sums ours %.1f s, virsh %.1f s'
              % (sz, len(mine), own, sum(x.seconds for x in mine), sum(x.seconds for x in theirs)), flush=True)
    finally:
        guest.cleanup()
        twin.cleanup()


def bench_revert_disk_only(conn, base):
    """Reverting to a disk-only snapshot: new overlays, the VM left off (it has no RAM to resume); the
    peer: `virsh destroy`, `qemu-img create` of the same overlay, `virsh define` of the edited XML."""
    guest, twin = large_guest(conn, base, 0), large_guest(conn, base, 0)
    try:
        guest.start()
        twin.start()
        tdir = os.path.join(twin.dir, 'virsh')
        os.makedirs(tdir)
        core(guest, lambda m, t: plan_create(m, t, 'disk', 'disk_only'))
        subprocess.run(virsh(*['snapshot-create-as', twin.name, 'disk', '--atomic', '--disk-only']
                             + diskspecs(twin, tdir, 'disk')), check=True, capture_output=True)
        root = etree.fromstring(twin.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
        overlay = os.path.join(tdir, 'revert-vda.qcow2')
        root.xpath("devices/disk[target/@dev='vda']/source")[0].set('file', overlay)
        xml_file = os.path.join(tdir, 'define.xml')
        with open(xml_file, 'wb') as f:
            f.write(etree.tostring(root))
        report('revert_disk_only', ours(guest, lambda m, t: plan_revert(m, t, 'disk', force=True)),
               peer(virsh('destroy', twin.name),
                    ['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', twin.disks['vda'], overlay],
                    virsh('define', xml_file)))
    finally:
        guest.cleanup()
        twin.cleanup()


# -- delete of an inner snapshot with a large layer ----------------------------------------------------

def inner_chain(conn, guest, layer_mib, running, by_virsh):
    """s1, `layer_mib` MiB written, s2, 16 MiB written, s3: deleting s2 merges the large layer (the image
    s1 put on top, frozen by s2) with the small one above it (frozen by s3)."""
    tdir = os.path.join(guest.dir, 'virsh')
    os.makedirs(tdir, exist_ok=True)
    if running:
        guest.start()
    for i, (pattern, mib) in enumerate([(0x11, layer_mib), (0x22, 16), (None, 0)]):
        name = 's%d' % (i + 1)
        if by_virsh:
            subprocess.run(virsh(*['snapshot-create-as', guest.name, name, '--atomic', '--disk-only']
                                 + diskspecs(guest, tdir, name)), check=True, capture_output=True)
        else:
            core(guest, lambda m, t, n=name: plan_create(m, t, n, 'disk_only'))
        if pattern is None:
            break
        if running:
            live_write(guest, pattern, 0, mib)
        else:
            write_pattern(top_of(guest), pattern, 0, mib)


def bench_delete(conn, layer_mib, times):
    sz = size_name(layer_mib)
    for running in (False, True) if P['delete_live'] else (False,):
        mode = 'live' if running else 'offline'
        guest, twin = testbed.Guest(conn, disks=1, disk_mib=P['disk']), testbed.Guest(conn, disks=1, disk_mib=P['disk'])
        try:
            inner_chain(conn, guest, layer_mib, running, by_virsh=False)
            inner_chain(conn, twin, layer_mib, running, by_virsh=True)
            # twin: s1 froze vda.qcow2 and put s1-vda on it (the large layer, frozen by s2); s2 put s2-vda
            # (the small layer, frozen by s3); s3 put s3-vda, the top
            large_layer, small_layer, top = (os.path.join(twin.dir, 'virsh', 's%d-vda.qcow2' % i) for i in (1, 2, 3))
            qemu('sync')
            mine = ours(guest, lambda m, t: plan_delete(m, t, 's2'))
            if running:
                theirs = peer(virsh('blockcommit', twin.name, 'vda', '--top', small_layer, '--base', large_layer, '--wait'),
                              virsh('snapshot-delete', twin.name, 's2', '--metadata'))
            else:
                theirs = peer(['qemu-img', 'commit', '-q', '-d', '-f', 'qcow2', '-b', large_layer, small_layer],
                              ['qemu-img', 'rebase', '-q', '-u', '-f', 'qcow2', '-F', 'qcow2', '-b', large_layer, top],
                              virsh('snapshot-delete', twin.name, 's2', '--metadata'))
            report('delete_inner_%s_layer_%s' % (mode, sz), mine, theirs, layer_mib=layer_mib)
            times.setdefault('delete_inner_' + mode, []).append((layer_mib, mine.seconds))
        finally:
            guest.cleanup()
            twin.cleanup()


# -- merge of two branches ----------------------------------------------------------------------------

def bench_merge(conn, mib, times):
    """main and feature each change `mib` MiB after 'base'; half of it the same bytes on both (compared,
    identical), half their own. The floor: reading both changed layers once."""
    guest = testbed.Guest(conn, disks=1, disk_mib=P['disk'])
    try:
        core(guest, lambda m, t: plan_create(m, t, 'base', 'disk_only'))
        write_pattern(top_of(guest), 0x31, 0, mib)
        core(guest, lambda m, t: plan_create(m, t, 'main1', 'disk_only'))
        core(guest, lambda m, t: TreeManager(m).plan_branch(t, 'feature', 'base', switch=True))
        write_pattern(top_of(guest), 0x31, mib // 2, mib // 2)
        write_pattern(top_of(guest), 0x32, mib, mib - mib // 2)
        core(guest, lambda m, t: plan_create(m, t, 'feat1', 'disk_only'))
        layers = [record(guest, 'main1')['disk_files'][0]['file_path'], record(guest, 'feat1')['disk_files'][0]['file_path']]
        mine = ours(guest, lambda m, t: TreeManager(m).plan_merge(t, 'feature', 'main'))
        # (not cat: coreutils' cat splices a file into /dev/null without reading it)
        theirs = peer(*[['dd', 'if=%s' % p, 'of=/dev/null', 'bs=4M', 'status=none'] for p in layers])
        report('merge_branches_%s_each' % size_name(mib), mine, theirs, changed_mib=mib,
               layer_bytes=sum(os.path.getsize(p) for p in layers))
        times.setdefault('merge_branches', []).append((mib, mine.seconds))
        # the floor measured: QEMU's own tools doing the merge's data work, each step once per plan that does it
        report('merge_branches_vs_qemu_img_%s_each' % size_name(mib), mine, merge_floor(guest, layers, mib), changed_mib=mib)
    finally:
        guest.cleanup()


def merge_floor(guest, layers, mib):
    """The data work of that merge, done by qemu-img: map both chains (two plans), compare the range
    both branches changed (half of `mib`, equal bytes) twice (the merge and the carry of the target's
    own writes compare different images), and copy the source's own range into a new image."""
    half, own = mib // 2, mib - mib // 2
    windows = [byte_window(p, 'qcow2', half * MIB, half * MIB) for p in layers]

    def compare():
        proc = subprocess.run(['qemu-img', 'compare', '-q', '-U', '-f', 'raw', '-F', 'raw'] + windows, capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError('the overlap should be equal: %s' % proc.stderr.decode(errors='replace'))
    scratch = os.path.join(guest.dir, 'floor.qcow2')
    maps = [['qemu-img', 'map', '-U', '--output=json', '-f', 'qcow2', p] for p in layers]
    try:
        return peer(*(maps + maps + [compare, compare] +
                      [['qemu-img', 'convert', '-U', '-f', 'raw', '-O', 'qcow2', byte_window(layers[1], 'qcow2', mib * MIB, own * MIB),
                        scratch]]))
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)


# -- consolidation of a 16-layer chain -------------------------------------------------------------------

def bench_consolidate(conn, layer_mib, times):
    work = os.path.join(testbed.WORK_DIR, 'bench-large-chain')
    shutil.rmtree(work, ignore_errors=True)
    a, b = os.path.join(work, 'a'), os.path.join(work, 'b')
    os.makedirs(a)
    chain = build_chain(a, 16, P['disk'], 16 * layer_mib)
    shutil.copytree(a, b)
    other = [p.replace(a, b) for p in chain]
    for i, p in enumerate(other[:-1]):
        qemu('qemu-img', 'rebase', '-u', '-f', 'qcow2', '-F', 'qcow2', '-b', other[i + 1], p)
    guest = guest_on(conn, a, chain[0], running=False)
    try:
        qemu('sync')
        mine = ours(guest, lambda m, t: plan_consolidate(m, t, max_chain_length=1, method='commit'))
        qemu('sync')
        theirs = peer(['qemu-img', 'commit', '-q', '-d', '-b', other[-1], other[0]])
        report('consolidate_16_layers_of_%s' % size_name(layer_mib), mine, theirs, layer_mib=layer_mib)
        times.setdefault('consolidate_16_layers', []).append((16 * layer_mib, mine.seconds))
    finally:
        guest.cleanup()
        shutil.rmtree(work, ignore_errors=True)


# -- guest reads through deep chains ----------------------------------------------------------------

def host_read(top, data_mib):
    """Seconds QEMU's block layer takes to read the first `data_mib` MiB of the disk `top` shows, 1 MiB
    at a time in order, on the host (`qemu-img bench`): the chain's cost without the TCG guest's."""
    start = time.perf_counter()
    qemu('qemu-img', 'bench', '-U', '-q', '-f', 'qcow2', '-c', data_mib, '-s', '1M', '-d', 4, top)
    return time.perf_counter() - start


def bench_read(conn):
    data_mib, depths = P['read']
    flat_times = []
    for depth in depths:
        work = os.path.join(testbed.WORK_DIR, 'bench-large-read')
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        chain = build_chain(work, depth, P['disk'], data_mib)
        host_deep = host_read(chain[0], data_mib)
        guest = guest_on(conn, work, chain[0], running=True)
        try:
            deep = guest.read_speed('vda', data_mib, timeout=1200)
            if depth > 1:
                core(guest, lambda m, t: plan_consolidate(m, t, max_chain_length=1, method='commit'))
            flat = guest.read_speed('vda', data_mib, timeout=1200)
            host_flat = host_read(top_of(guest), data_mib)
        finally:
            guest.cleanup()
            shutil.rmtree(work, ignore_errors=True)
        flat_times.append(flat)
        print('guest_read_%s_depth_%d (ours: flat, peer: through the chain): ours=%.3f peer=%.3f ratio=%.2f '
              'deep_mib_s=%.0f flat_mib_s=%.0f' % (size_name(data_mib), depth, flat, deep, flat / deep,
                                                   data_mib / deep, data_mib / flat), flush=True)
        large.RESULTS.append(dict(name='guest_read_depth_%d' % depth, depth=depth, ours=flat, peer=deep,
                                  ratio=flat / deep, data_mib=data_mib))
        print('host_read_%s_depth_%d (ours: flat, peer: through the chain): ours=%.3f peer=%.3f ratio=%.2f '
              'deep_mib_s=%.0f flat_mib_s=%.0f' % (size_name(data_mib), depth, host_flat, host_deep, host_flat / host_deep,
                                                   data_mib / host_deep, data_mib / host_flat), flush=True)
        large.RESULTS.append(dict(name='host_read_depth_%d' % depth, depth=depth, ours=host_flat, peer=host_deep,
                                  ratio=host_flat / host_deep, data_mib=data_mib))


# -- tree operations with hundreds of snapshots ----------------------------------------------------------

def bench_tree(conn, counts, times):
    """Internal snapshots of a shut-off guest (one qcow2, no chain): ours made through the module core,
    the twin's by virsh; at each count, creation of one more, list, info with a filter, revert to the
    oldest, delete from the middle, each vs virsh."""
    guest, twin = testbed.Guest(conn, disks=1, disk_mib=64), testbed.Guest(conn, disks=1, disk_mib=64)
    have = 0
    try:
        for count in counts:
            while have < count - 1:
                name = 's%04d' % have
                core(guest, lambda m, t, n=name: plan_create(m, t, n, 'internal', tags=['odd'] if have % 2 else None))
                twin.dom.snapshotCreateXML('<domainsnapshot><name>%s</name></domainsnapshot>' % name, 0)
                have += 1
            name = 's%04d' % have
            tag = ['odd'] if have % 2 else None
            have += 1

            def line(op, o, p):
                report('tree_%s_%d_snapshots' % (op, count), o, p, snapshots=count)
                times.setdefault('tree_' + op, []).append((count, o.seconds))
            line('create', ours(guest, lambda m, t: plan_create(m, t, name, 'internal', tags=tag)),
                 peer(virsh('snapshot-create-as', twin.name, name)))
            line('list', measured(lambda: domain_report(manager(guest), Filter())),
                 peer(virsh('snapshot-list', twin.name)))
            # info with a filter: ours by tag and name glob; virsh by its own filter (leaves) and a grep's work
            line('info_filtered', measured(lambda: domain_report(manager(guest), Filter(name='s0*', tags=['odd']))),
                 peer(virsh('snapshot-list', twin.name, '--leaves', '--name')))
            line('revert_oldest', ours(guest, lambda m, t: plan_revert(m, t, 's0000', force=True)),
                 peer(virsh('snapshot-revert', twin.name, 's0000')))
            middle = 's%04d' % (count // 2)
            line('delete_middle', ours(guest, lambda m, t: plan_delete(m, t, middle)),
                 peer(virsh('snapshot-delete', twin.name, middle)))
            # put the deleted one back under another name, so the next count starts with as many
            core(guest, lambda m, t: plan_create(m, t, 'r%04d' % count, 'internal'))
            twin.dom.snapshotCreateXML('<domainsnapshot><name>r%04d</name></domainsnapshot>' % count, 0)
    finally:
        guest.cleanup()
        twin.cleanup()


# -- export of a GiB disk: bundle and incremental ---------------------------------------------------------

def export_core(guest, name, dest, **kw):
    m = manager(guest)
    try:
        return Exporter(m).run(False, name, dest, **kw)
    finally:
        m.hypervisor.close()


def bench_export(conn, mib, times):
    """s1 of a running guest whose disk holds `mib` MiB; mib/4 MiB written by the running QEMU; s2.
    export_bundle of s1 vs qemu-img convert; export_incremental s1->s2 vs `qemu-img convert -B` and vs
    `virtnbdbackup -l inc` on a twin given the same writes after its full backup."""
    sz = size_name(mib)
    work = os.path.join(testbed.WORK_DIR, 'bench-large-export')
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    base = Base(P['disk'], mib)
    guest, twin = large_guest(conn, base, 0), large_guest(conn, base, 0)
    try:
        for g in (guest, twin):
            g.start()
        core(guest, lambda m, t: plan_create(m, t, 's1', 'disk_only'))
        frozen = record(guest, 's1')['disk_files'][0]['file_path']
        changed = max(1, mib // 4)
        live_write(guest, 0x44, 0, changed)
        core(guest, lambda m, t: plan_create(m, t, 's2', 'disk_only'))
        frozen2 = record(guest, 's2')['disk_files'][0]['file_path']
        out = os.path.join(work, 'out')
        os.makedirs(out)
        qemu('sync')
        mine = measured(lambda: export_core(guest, 's1', os.path.join(out, 'b1')))
        theirs = peer(['qemu-img', 'convert', '-U', '-f', 'qcow2', '-O', 'qcow2', frozen, os.path.join(out, 'peer.qcow2')])
        report('export_bundle_%s' % sz, mine, theirs, data_mib=mib)
        times.setdefault('export_bundle', []).append((mib, mine.seconds))
        mine = measured(lambda: export_core(guest, 's2', os.path.join(out, 'b2'), incremental_from='s1'))
        theirs = peer(['qemu-img', 'convert', '-U', '-f', 'qcow2', '-O', 'qcow2', '-B', frozen, '-F', 'qcow2', frozen2,
                       os.path.join(out, 'peer-inc.qcow2')])
        inc_bytes = os.path.getsize(os.path.join(out, 'b2', 'disk-vda.qcow2'))
        report('export_incremental_%s_changed' % size_name(changed), mine, theirs, changed_mib=changed,
               bytes=inc_bytes, peer_bytes=os.path.getsize(os.path.join(out, 'peer-inc.qcow2')))
        times.setdefault('export_incremental', []).append((changed, mine.seconds))
        if shutil.which('virtnbdbackup'):
            backup = os.path.join(work, 'virtnbdbackup')
            subprocess.run(['virtnbdbackup', '-d', twin.name, '-l', 'full', '-o', backup, '-U', URI],
                           check=True, capture_output=True)
            live_write(twin, 0x44, 0, changed)
            theirs = peer(['virtnbdbackup', '-d', twin.name, '-l', 'inc', '-o', backup, '-U', URI])
            inc_files = [os.path.join(backup, f) for f in os.listdir(backup) if '.inc.' in f and f.endswith('.data')]
            nbd_bytes = sum(os.path.getsize(f) for f in inc_files)
            report('export_incremental_vs_virtnbdbackup_%s_changed' % size_name(changed), mine, theirs,
                   changed_mib=changed, bytes=inc_bytes, peer_bytes=nbd_bytes,
                   bytes_ratio='%.2f' % (inc_bytes / float(nbd_bytes) if nbd_bytes else float('inf')))
        else:
            print('# virtnbdbackup is not installed: no export_incremental_vs_virtnbdbackup line', flush=True)
    finally:
        guest.cleanup()
        try:
            for cp in twin.dom.listAllCheckpoints(0):
                cp.delete(libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)
        except libvirt.libvirtError:
            pass
        twin.cleanup()
        base.remove()
        shutil.rmtree(work, ignore_errors=True)


def bench_create_pooled(conn, ram_mib, rounds=8):
    """Memory-bearing creation pooled: `rounds` snapshots each side (memory and external in turn, the
    same libvirt call), which side goes first alternating A-B-B-A. Single rounds of a GiB RAM save
    swing 2-4x here; the medians and sums of eight say more, and ours' time outside libvirt's call says
    what the module adds."""
    base = Base(4096, ram_mib)
    guest, twin = large_guest(conn, base, ram_mib), large_guest(conn, base, ram_mib)
    mine, theirs = [], []
    try:
        guest.start()
        twin.start()
        dirty([guest, twin], ram_mib)
        tdir = os.path.join(twin.dir, 'virsh')
        os.makedirs(tdir)
        for i in range(rounds):
            kind, name = ('memory', 'external')[i % 2], 'p%d' % i

            def ours_side():
                mine.append(ours(guest, lambda m, t: plan_create(m, t, name, kind)))

            def peer_side():
                theirs.append(peer(virsh(*['snapshot-create-as', twin.name, name, '--atomic', '--live', '--memspec',
                                           'file=%s/%s.save,snapshot=external' % (tdir, name)] + diskspecs(twin, tdir, name))))
            for side in ((ours_side, peer_side) if i % 4 in (0, 3) else (peer_side, ours_side)):
                side()
        o, p = (statistics.median(x.seconds for x in side) for side in (mine, theirs))
        report('create_with_ram_pooled_%s' % size_name(ram_mib), large.Measure(o, max(x.rss_mib for x in mine)),
               large.Measure(p, 0), ram_mib=ram_mib, rounds=rounds,
               outside_libvirt_s='%.3f' % statistics.median(x.seconds - x.libvirt for x in mine))
        print('# create_with_ram_pooled_%s: sums ours %.1f s, virsh %.1f s (%.2f)' % (
            size_name(ram_mib), sum(x.seconds for x in mine), sum(x.seconds for x in theirs),
            sum(x.seconds for x in mine) / sum(x.seconds for x in theirs)), flush=True)
    finally:
        guest.cleanup()
        twin.cleanup()
        base.remove()


def part(name):
    """Whether to run a part: every default one unless NOVA_BENCH_LARGE_ONLY names some; `pooled` only when named."""
    if ONLY or name in OPT_IN:
        return name in ONLY
    return True


OPT_IN = ('pooled',)


def main():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(URI)
    os.makedirs(testbed.WORK_DIR, exist_ok=True)
    started = time.time()
    with open('/proc/loadavg') as f:
        print('# bench-large (%s profile), %s UTC, load average %s' % (SCALE, time.strftime('%Y-%m-%d %H:%M', time.gmtime()),
                                                                       ' '.join(f.read().split()[:3])), flush=True)
    times = {}
    base = None
    try:
        if part('vm'):
            base = Base(P['disk'], max(P['ram']))
            for ram in P['ram']:
                bench_vm(conn, base, ram, times)
            if P['revert_disk_only']:
                bench_revert_disk_only(conn, base)
            base.remove()
            for op in ('create_internal', 'revert_internal', 'create_disk_only', 'create_external', 'create_memory',
                       'revert_memory', 'switch_running_branches'):
                growth(op + ' (by dirty RAM, MiB)', times.get(op, []))
        if part('delete'):
            for mib in P['layer']:
                bench_delete(conn, mib, times)
            for mode in ('offline', 'live'):
                growth('delete_inner_%s (by layer, MiB)' % mode, times.get('delete_inner_' + mode, []))
        if part('merge'):
            for mib in P['merge']:
                bench_merge(conn, mib, times)
            growth('merge_branches (by MiB changed on each side)', times.get('merge_branches', []))
        if part('consolidate'):
            for mib in P['consolidate']:
                bench_consolidate(conn, mib, times)
            growth('consolidate_16_layers (by MiB of data)', times.get('consolidate_16_layers', []))
        if part('read'):
            bench_read(conn)
        if part('tree'):
            bench_tree(conn, P['tree'], times)
            for op in ('create', 'list', 'info_filtered', 'revert_oldest', 'delete_middle'):
                growth('tree_%s (by snapshots)' % op, times.get('tree_' + op, []))
        if part('pooled'):
            bench_create_pooled(conn, P['ram'][0])
        if part('export'):
            for mib in P['export']:
                bench_export(conn, mib, times)
            growth('export_bundle (by MiB of data)', times.get('export_bundle', []))
            growth('export_incremental (by MiB changed)', times.get('export_incremental', []))
    finally:
        if base is not None:
            base.remove()
    with open('/proc/loadavg') as f:
        print('# bench-large done in %.0f s, load average %s' % (time.time() - started, ' '.join(f.read().split()[:3])),
              flush=True)
    out = os.environ.get('NOVA_BENCH_LARGE_JSON')
    if out:
        with open(out, 'w') as f:
            json.dump(dict(profile=SCALE, results=large.RESULTS), f, indent=1)


if __name__ == '__main__':
    sys.exit(main())
