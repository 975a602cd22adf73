# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova_snapshot against virsh on the running test guest, same run, alternating rounds.

- create_<type>: the module core (plan + lock + create + store) vs `virsh snapshot-create-as` doing
  the same libvirt work (same flags: atomic, live for RAM, disk-only).
- revert_internal: vs `virsh snapshot-revert`.
- revert_memory: reverting an external snapshot with RAM vs the same work by hand with virsh:
  `virsh destroy` + `virsh restore --xml` of the same memory file onto a fresh overlay.
"""

from __future__ import annotations

import os
import subprocess

import libvirt
from lxml import etree

from common import report, run_ours, timed, virsh  # first: it puts the collection and the test bed on sys.path
from ansible_collections.nova.snapshots.plugins.module_utils.operations._create import plan_create  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.operations._revert import plan_revert  # noqa: E402
import testbed


ROUNDS = int(os.environ.get('NOVA_BENCH_ROUNDS', '3'))


def virsh_create_args(guest, name, snapshot_type, directory):
    if snapshot_type == 'internal':
        return ['snapshot-create-as', guest.name, name, '--atomic']
    args = ['snapshot-create-as', guest.name, name, '--atomic']
    if snapshot_type == 'disk_only':
        args.append('--disk-only')
    else:
        args += ['--live', '--memspec', 'file=%s/memory.save,snapshot=external' % directory]
    for dev in sorted(guest.disks):
        args += ['--diskspec', '%s,file=%s/disk_%s.qcow2,snapshot=external' % (dev, directory, dev)]
    return args


def bench_create(conn):
    for snapshot_type in ('internal', 'external', 'memory', 'disk_only'):
        # two identical guests, one for each side, so neither sees the other's snapshots
        guest, twin = testbed.Guest(conn, disks=2), testbed.Guest(conn, disks=2)
        try:
            guest.start()
            twin.start()
            mine, peer = [], []
            for r in range(ROUNDS):
                mine.append(timed(lambda: run_ours(guest, lambda m, t: plan_create(m, t, 's%d' % r, snapshot_type))))
                directory = os.path.join(twin.dir, 'virsh-%d' % r)
                os.makedirs(directory)
                peer.append(timed(lambda: virsh(*virsh_create_args(twin, 's%d' % r, snapshot_type, directory))))
            report('create_%s' % snapshot_type, mine, peer)
        finally:
            guest.cleanup()
            twin.cleanup()


def bench_revert_internal(conn):
    guest = testbed.Guest(conn, disks=2)
    try:
        guest.start()
        run_ours(guest, lambda m, t: plan_create(m, t, 'base', 'internal'))
        mine, peer = [], []
        for _round in range(ROUNDS):
            mine.append(timed(lambda: run_ours(guest, lambda m, t: plan_revert(m, t, 'base', force=True))))
            peer.append(timed(lambda: virsh('snapshot-revert', guest.name, 'base')))
        report('revert_internal', mine, peer)
    finally:
        guest.cleanup()


def bench_revert_memory(conn):
    guest = testbed.Guest(conn, disks=2)
    try:
        guest.start()
        made = run_ours(guest, lambda m, t: plan_create(m, t, 'ram', 'memory'))
        record = made['snapshot']
        memory = record['memory_file']
        mine, peer = [], []
        for r in range(ROUNDS):
            mine.append(timed(lambda: run_ours(guest, lambda m, t: plan_revert(m, t, 'ram', force=True))))
            # the same work by hand: fresh overlays on the frozen images, the save file's XML pointed at them
            xml = etree.fromstring(conn.saveImageGetXMLDesc(memory, 0).encode())
            for d in record['disk_files']:
                overlay = os.path.join(guest.dir, 'peer-%d-%s.qcow2' % (r, d['device']))
                subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', d['format'], '-b', d['file_path'],
                                overlay], check=True)
                disk = xml.xpath("devices/disk[target/@dev=$d]", d=d['device'])[0]
                disk.find('source').set('file', overlay)
                for bs in disk.findall('backingStore'):
                    disk.remove(bs)
            xml_file = os.path.join(guest.dir, 'peer-%d.xml' % r)
            with open(xml_file, 'wb') as f:
                f.write(etree.tostring(xml))
            restore = ('restore', memory, '--xml', xml_file, '--running')
            peer.append(timed(lambda: (virsh('destroy', guest.name), virsh(*restore))))
        report('revert_memory', mine, peer)
    finally:
        guest.cleanup()


def main():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open('qemu:///system')
    os.makedirs(testbed.WORK_DIR, exist_ok=True)
    bench_create(conn)
    bench_revert_internal(conn)
    bench_revert_memory(conn)


if __name__ == '__main__':
    main()
