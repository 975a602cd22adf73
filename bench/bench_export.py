# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova_snapshot_export / nova_snapshot_import against the plain tools doing the same copy.

- export_bundle: the export core (lock, measure, flatten each disk, XML, record, manifest with
  SHA-256, rename) of a disk-only snapshot of the running guest, vs `qemu-img convert -O qcow2` of
  the same frozen chain.
- export_incremental: an incremental bundle between two snapshots vs `qemu-img convert -B` of the
  one layer that changed (the least any tool must do: copy the changed clusters), same data.
  (virtnbdbackup -l inc, the issue's peer, runs in bench_large.py: a twin guest with a dirty bitmap.)
- import_bundle: the import core (verify every checksum, convert, qemu-img compare, define) vs
  `qemu-img convert` + `virsh define` of the same bundle.

The guest's disk is a chain with NOVA_BENCH_EXPORT_MIB MiB of data (default 256) spread over its layers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid

from common import URI, Hypervisor, QemuImg, manager, report, run_command, timed, virsh  # first: sets sys.path
from ansible_collections.nova.snapshots.plugins.module_utils.operations._create import plan_create  # noqa: E402
import testbed
from bench_chain import build_chain, guest_on

from ansible_collections.nova.snapshots.plugins.module_utils.operations._export import Exporter  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.operations._import import Importer  # noqa: E402

ROUNDS = int(os.environ.get('NOVA_BENCH_ROUNDS', '3'))
DATA_MIB = int(os.environ.get('NOVA_BENCH_EXPORT_MIB', '256'))


def qemu(*args):
    subprocess.run([str(a) for a in args], check=True, capture_output=True)


def take(guest, name):
    m = manager(guest)
    try:
        return m.run(False, lambda tree: plan_create(m, tree, name, 'disk_only'))['snapshot']
    finally:
        m.hypervisor.close()


def export(guest, name, dest, **kw):
    m = manager(guest)
    try:
        return Exporter(m).run(False, name, dest, **kw)
    finally:
        m.hypervisor.close()


def main(conn):
    work = os.path.join(testbed.WORK_DIR, 'bench-export')
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    chain = build_chain(work, 3, 2 * DATA_MIB, DATA_MIB)
    guest = guest_on(conn, work, chain[0], running=True)
    try:
        s1 = take(guest, 's1')
        frozen = s1['disk_files'][0]['file_path']
        # changed data for the incremental: DATA_MIB/4 MiB on top of s1, then s2 of the running VM
        # (QEMU refuses a second writer on a running disk, so the data goes in while the VM is off)
        active = re.search(r"<source file='([^']+)'", guest.dom.XMLDesc(0)).group(1)
        guest.stop()
        qemu('qemu-io', '-f', 'qcow2', '-c', 'write -P 9 0 %d' % (DATA_MIB // 4 * 2 ** 20), active)
        guest.start()
        s2 = take(guest, 's2')
        frozen2 = s2['disk_files'][0]['file_path']

        ex_ours, ex_peer, inc_ours, inc_peer, im_ours, im_peer = [], [], [], [], [], []
        for round_ in range(ROUNDS):
            out = os.path.join(work, 'out')
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            ex_ours.append(timed(lambda: export(guest, 's1', os.path.join(out, 'b1'))))
            ex_peer.append(timed(lambda: qemu('qemu-img', 'convert', '-U', '-f', 'qcow2', '-O', 'qcow2', frozen,
                                              os.path.join(out, 'peer.qcow2'))))
            inc_ours.append(timed(lambda: export(guest, 's2', os.path.join(out, 'b2'), incremental_from='s1')))
            inc_peer.append(timed(lambda: qemu('qemu-img', 'convert', '-U', '-f', 'qcow2', '-O', 'qcow2',
                                               '-B', frozen, '-F', 'qcow2', frozen2, os.path.join(out, 'peer-inc.qcow2'))))
            name = testbed.PREFIX + 'bx' + uuid.uuid4().hex[:6]
            peer_name = testbed.PREFIX + 'by' + uuid.uuid4().hex[:6]
            try:
                hv = Hypervisor(URI)
                try:
                    im_ours.append(timed(lambda: Importer(hv, QemuImg(run_command)).run(
                        False, [os.path.join(out, 'b1')], name, dest_dir=os.path.join(out, 'vms'))))
                finally:
                    hv.close()
                xml = open(os.path.join(out, 'b1', 'domain.xml')).read()
                xml_path = os.path.join(out, 'peer.xml')

                def peer_import():
                    qemu('qemu-img', 'convert', '-f', 'qcow2', '-O', 'qcow2', os.path.join(out, 'b1', 'disk-vda.qcow2'),
                         os.path.join(out, 'peer-import.qcow2'))
                    with open(xml_path, 'w') as f:
                        f.write(re.sub(r'<uuid>[^<]*</uuid>', '', xml).replace('<name>%s</name>' % guest.name, '<name>%s</name>' % peer_name)
                                .replace(chain[0], os.path.join(out, 'peer-import.qcow2')))
                    virsh('define', xml_path)
                im_peer.append(timed(peer_import))
            finally:
                testbed.destroy_domain(conn, name)
                testbed.destroy_domain(conn, peer_name)
        sizes = (os.path.getsize(os.path.join(out, 'b2', 'disk-vda.qcow2')), os.path.getsize(os.path.join(out, 'peer-inc.qcow2')))
        report('export_bundle', ex_ours, ex_peer)
        report('export_incremental', inc_ours, inc_peer)
        print('export_incremental_bytes: ours=%d peer=%d ratio=%.2f' % (sizes[0], sizes[1], sizes[0] / sizes[1]), flush=True)
        report('import_bundle', im_ours, im_peer)
    finally:
        guest.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    import libvirt
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    main(libvirt.open(URI))
