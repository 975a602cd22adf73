# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova_snapshot_export / nova_snapshot_import on the real test guest.

Exports are proven by their bytes (the snapshot's markers, read on the host with qemu-io), by
readers we did not write (sha256sum, qemu-img, virt-v2v), and by importing them under a new name and
booting or resuming that VM (markers through its command port, the RAM counter on its console).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import threading
import time
import uuid

import libvirt
import pytest

import testbed
from testbed import assert_markers, image_bytes, run_task, write_markers

EXPORT = 'nova.snapshots.nova_snapshot_export'
IMPORT = 'nova.snapshots.nova_snapshot_import'
SNAP = 'nova.snapshots.nova_snapshot'


def snap(guest, name, **args):
    result = run_task(SNAP, dict(domain=guest.name, name=name, storage_dir=guest.storage_dir, **args))
    assert not result.get('failed'), result.get('msg')
    return result['snapshot']


def export(guest, name, dest, ok=True, **args):
    result = run_task(EXPORT, dict(domain=guest.name, name=name, dest=str(dest), storage_dir=guest.storage_dir, **args))
    if ok:
        assert not result.get('failed'), result.get('msg')
    return result


def import_(src, domain, ok=True, **args):
    result = run_task(IMPORT, dict(src=[str(s) for s in src], domain=domain, **args))
    if ok:
        assert not result.get('failed'), result.get('msg')
    return result


def vm_dir(guest):
    """Where imported disks go: under the guest's directory, which QEMU's user can reach (tmp_path is 0700)."""
    return os.path.join(guest.dir, 'imported')


def new_name():
    return testbed.PREFIX + uuid.uuid4().hex[:8]


@pytest.fixture
def imported(conn):
    """imported(name, like, boots) -> a Guest handle on the imported domain `name`, which reuses the
    console and command socket paths of the exported guest `like` (stop `like` before booting it);
    `boots` is the count of ready lines on that console before the import (see boots())."""
    names = []

    def make(name, like, boots):
        names.append(name)
        g = testbed.Guest.__new__(testbed.Guest)
        g.conn, g.name, g.dir = conn, name, like.dir
        g.disks, g.console_path, g.sock_path = like.disks, like.console_path, like.sock_path
        g.dom = conn.lookupByName(name)
        g._boots_seen = boots
        return g
    make.names = names
    yield make
    for name in names:
        testbed.destroy_domain(conn, name)


def boots(guest):
    return len(re.findall(r'nova-guest: ready', guest.console()))


def no_partials(*dirs):
    for d in dirs:
        if os.path.isdir(d):
            left = [n for n in os.listdir(d) if n.endswith(('.partial', '.partial.d', '.save'))]
            assert not left, 'left behind in %s: %r' % (d, left)


def assert_not_defined(conn, name):
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName(name)


# -- bundle -------------------------------------------------------------------------------------
def test_bundle_export_while_running_then_resume_from_memory(make_guest, imported, conn, tmp_path):
    guest = make_guest(disks=2)
    write_markers(guest, 1)
    guest.wait_tick(3)
    first = guest.tick()
    snap(guest, 'cp', snapshot_type='memory')
    last = guest.tick()             # the RAM was saved between these two ticks (the task's run time)
    write_markers(guest, 2)                     # today's data, not the snapshot's

    dest = tmp_path / 'cp.bundle'
    states, box = [], {}
    runner = threading.Thread(target=lambda: box.update(r=export(guest, 'cp', dest, include_memory=True)))
    tick_before = guest.tick()
    runner.start()
    while runner.is_alive():
        states.append(guest.state)
        time.sleep(0.1)
    runner.join()
    result = box['r']
    assert result['changed'] is True
    assert set(states) == {'running'}, states      # never paused
    assert guest.tick() > tick_before              # and the counter kept going meanwhile
    names = sorted(os.listdir(dest))
    assert names == ['SHA256SUMS', 'bundle.json', 'disk-vda.qcow2', 'disk-vdb.qcow2', 'domain.xml',
                     'memory.save', 'snapshot.json']
    assert subprocess.run(['sha256sum', '-c', '--strict', 'SHA256SUMS'], cwd=dest, capture_output=True, check=False).returncode == 0
    for dev in ('vda', 'vdb'):
        disk = str(dest / ('disk-%s.qcow2' % dev))
        info = json.loads(subprocess.run(['qemu-img', 'info', '--output=json', disk], check=True,
                                         capture_output=True, text=True).stdout)
        assert 'backing-filename' not in info                       # flattened
        assert image_bytes(disk, 4096, 9) == ('step1-%s' % dev).encode()
        assert image_bytes(disk, 8192, 9) == b'\0' * 9              # step 2 came after the snapshot
    assert result['bytes_written'] == sum(os.path.getsize(dest / n) for n in names)
    assert {f['name'] for f in result['files']} == set(names)

    again = export(guest, 'cp', dest, include_memory=True)
    assert again['changed'] is False and again['bundle_id'] == result['bundle_id']

    guest.stop()
    name = new_name()
    offset = len(guest.console())
    seen = boots(guest)
    out = import_([dest], name, dest_dir=vm_dir(guest), start=True)
    assert out['memory_restored'] is True and out['started'] is True
    assert [d['equal'] for d in out['verified']['disks']] == [True, True]
    copy = imported(name, guest, seen)
    assert copy.dom.UUIDString() != guest.dom.UUIDString()
    copy.note_restored()
    time.sleep(2.5)
    ticks = copy.ticks_since(offset)
    assert ticks, 'no ticks after the import'
    run = max(i for i in range(len(ticks)) if i == 0 or ticks[i] != ticks[i - 1] + 1)
    assert first <= ticks[run] <= last + 2, 'counter after import %r, snapshot taken at ticks %d..%d' % (ticks, first, last)
    assert_markers(copy, 1)
    xml = copy.dom.XMLDesc(0)
    assert str(os.path.join(vm_dir(guest), '%s-vda.qcow2' % name)) in xml and guest.disks['vda'] not in xml
    no_partials(vm_dir(guest))


def test_bundle_tar_round_trip_boots_with_the_snapshot_disks(make_guest, imported, tmp_path):
    guest = make_guest(disks=1)
    write_markers(guest, 1)
    write_markers(guest, 2)
    snap(guest, 'two', snapshot_type='disk_only')
    write_markers(guest, 3)
    dest = tmp_path / 'two.tar'
    result = export(guest, 'two', dest, compress=True, io_limit=512 * 1024 * 1024)
    with tarfile.open(dest) as tar:
        members = [m.name for m in tar.getmembers()]
    assert members[0] == 'bundle.json' and members[-1] == 'SHA256SUMS' and 'memory.save' not in members
    assert os.path.getsize(dest) == result['bytes_written']
    assert not os.path.exists(str(dest) + '.partial') and not os.path.exists(str(dest) + '.partial.d')

    guest.stop()
    name = new_name()
    seen = boots(guest)
    import_([dest], name, dest_dir=vm_dir(guest), start=True)
    copy = imported(name, guest, seen)
    copy.wait_ready()
    assert_markers(copy, 2)


def test_bundle_into_a_storage_pool(make_guest, conn, tmp_path):
    guest = make_guest(disks=1)
    write_markers(guest, 1)
    snap(guest, 's', snapshot_type='disk_only')
    dest = tmp_path / 's.bundle'
    export(guest, 's', dest)
    pool_dir = tmp_path.__class__(guest.dir) / 'pool'
    pool_dir.mkdir()
    pool_name = 'nvexp-' + uuid.uuid4().hex[:8]
    pool = conn.storagePoolCreateXML("<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>"
                                     % (pool_name, pool_dir), 0)
    name = new_name()
    try:
        out = import_([dest], name, storage_pool=pool_name)
        vol = '%s-vda.qcow2' % name
        assert out['disks'][0]['volume'] == vol
        pool.refresh(0)
        assert vol in pool.listVolumes()
        assert image_bytes(str(pool_dir / vol), 4096, 9) == b'step1-vda'
    finally:
        testbed.destroy_domain(conn, name)
        pool.destroy()


# -- incremental --------------------------------------------------------------------------------
SPREAD = 80                # markers per step, each in its own 64 KiB cluster


def spread_markers(guest, step):
    for i in range(SPREAD):
        guest.write_marker('vda', (step * 100 + i) * 65536 + 512, 's%d-%d' % (step, i))


def test_incremental_chain_gives_the_newest_disks(make_guest, imported, tmp_path):
    guest = make_guest(disks=1, disk_mib=64)
    for step in range(1, 6):
        write_markers(guest, step)
        if step > 1:
            spread_markers(guest, step)
        snap(guest, 's%d' % step, snapshot_type='disk_only')
    full = export(guest, 's1', tmp_path / 'full')
    inc3 = export(guest, 's3', tmp_path / 'inc3', incremental_from='s1')
    inc5 = export(guest, 's5', tmp_path / 'inc5.tar', incremental_from='s3')
    assert full['changed_bytes'] is None
    for result in (inc3, inc5):
        changed = (2 * SPREAD + 1) * 65536          # two steps of spread markers, plus cluster 0 (step markers)
        assert result['changed_bytes'] == changed
        disk = [f for f in result['files'] if f['name'] == 'disk-vda.qcow2'][0]
        assert changed <= disk['size'] <= changed * 1.05, (disk['size'], changed)
        assert result['bytes_written'] <= changed * 1.05
    record = json.loads((tmp_path / 'inc3' / 'bundle.json').read_text())
    assert record['kind'] == 'incremental' and record['extends']['snapshot_name'] == 's1'
    info = json.loads(subprocess.run(['qemu-img', 'info', '--output=json', '-f', 'qcow2',
                                      str(tmp_path / 'inc3' / 'disk-vda.qcow2')],
                                     check=True, capture_output=True, text=True).stdout)
    assert info['backing-filename'] == 'disk-vda.qcow2'      # named, not bundled

    # out of order: refused, nothing written
    bad = import_([tmp_path / 'full', tmp_path / 'inc5.tar'], new_name(), ok=False, dest_dir=str(tmp_path / 'x'))
    assert bad['failed'] and 'does not extend' in bad['msg']
    assert not os.path.exists(tmp_path / 'x')

    guest.stop()
    name = new_name()
    seen = boots(guest)
    out = import_([tmp_path / 'full', tmp_path / 'inc3', tmp_path / 'inc5.tar'], name, dest_dir=vm_dir(guest),
                  start=True)
    frozen = snap(guest, 's5')['disk_files'][0]['file_path']
    assert subprocess.run(['qemu-img', 'compare', '-U', '-f', 'qcow2', '-F', 'qcow2', out['disks'][0]['path'], frozen],
                          capture_output=True, check=False).returncode == 0
    copy = imported(name, guest, seen)
    copy.wait_ready()
    assert_markers(copy, 5)
    assert copy.read_marker('vda', 307 * 65536 + 512, 8) == 's3-7'


# -- OVA and disk formats -----------------------------------------------------------------------
def test_ova_read_by_other_tools_and_round_trip(make_guest, imported, tmp_path):
    guest = make_guest(disks=2)
    write_markers(guest, 1)
    snap(guest, 'cp', snapshot_type='external')
    write_markers(guest, 2)
    ova = tmp_path / 'web-server-checkpoint.ova'
    result = export(guest, 'cp', ova, format='ova', compress=True, compatibility='vmware-workstation-16')
    with tarfile.open(ova) as tar:
        members = tar.getmembers()
        assert tar.format == tarfile.USTAR_FORMAT or all(len(m.name) < 100 for m in members)
        assert [m.name for m in members] == ['web-server-checkpoint.ovf', 'web-server-checkpoint.mf',
                                             'web-server-checkpoint-vda.vmdk', 'web-server-checkpoint-vdb.vmdk']
        out = tmp_path / 'unpacked'
        tar.extractall(out)
    assert subprocess.run(['sha256sum', '-c', 'web-server-checkpoint.mf'], cwd=out, capture_output=True, check=False).returncode == 0
    assert 'vmx-18' in (out / 'web-server-checkpoint.ovf').read_text()
    for dev in ('vda', 'vdb'):
        vmdk = str(out / ('web-server-checkpoint-%s.vmdk' % dev))
        info = json.loads(subprocess.run(['qemu-img', 'info', '--output=json', '-f', 'vmdk', vmdk], check=True,
                                         capture_output=True, text=True).stdout)
        assert info['format-specific']['data']['create-type'] == 'streamOptimized'
        assert image_bytes_fmt(vmdk, 'vmdk', 4096, 9) == ('step1-%s' % dev).encode()
        assert image_bytes_fmt(vmdk, 'vmdk', 8192, 9) == b'\0' * 9
    assert {f['name'] for f in result['files']} == {m.name for m in members}

    guest.stop()
    name = new_name()
    seen = boots(guest)
    import_([ova], name, dest_dir=vm_dir(guest), start=True)
    copy = imported(name, guest, seen)
    copy.wait_ready()
    assert_markers(copy, 1)


def image_bytes_fmt(path, fmt, offset, length):
    out = subprocess.run(['qemu-io', '-r', '-U', '-f', fmt, '-c', 'read -v %d %d' % (offset, length), path],
                         check=True, capture_output=True, text=True).stdout
    data = bytearray()
    for line in out.splitlines():
        m = re.match(r'^[0-9a-f]{8}:\s+((?:[0-9a-f]{2}\s)+)', line)
        if m:
            data += bytes.fromhex(m.group(1).replace(' ', ''))
    return bytes(data[:length])


@pytest.mark.skipif(not shutil.which('virt-v2v'), reason='virt-v2v is not installed')
def test_ova_parsed_by_virt_v2v(make_guest, tmp_path):
    guest = make_guest(disks=2)
    write_markers(guest, 1)
    snap(guest, 'cp', snapshot_type='disk_only')
    ova = tmp_path / 'vm.ova'
    export(guest, 'cp', ova, format='ova', compatibility='esxi-8')
    proc = subprocess.run(['virt-v2v', '-i', 'ova', str(ova), '--print-source'], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, LIBGUESTFS_BACKEND='direct'), check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert re.search(r'memory:\s*201326592', text), text              # 192 MiB
    assert re.search(r'nr vCPUs:\s*1', text), text
    assert re.findall(r'^\s*(\d+) \[scsi\]', text, re.M) == ['0', '1'], text     # both disks, on the SCSI controller


@pytest.mark.parametrize('fmt', ['qcow2', 'raw', 'vmdk'])
def test_disk_formats(make_guest, tmp_path, conn, fmt):
    guest = make_guest(disks=1)
    write_markers(guest, 1)
    snap(guest, 'cp', snapshot_type='disk_only')
    write_markers(guest, 2)
    dest = tmp_path / 'disks'
    export(guest, 'cp', dest, format=fmt)
    assert sorted(os.listdir(dest)) == ['SHA256SUMS', 'disk-vda.%s' % fmt]
    assert subprocess.run(['sha256sum', '-c', 'SHA256SUMS'], cwd=dest, capture_output=True, check=False).returncode == 0
    assert image_bytes_fmt(str(dest / ('disk-vda.%s' % fmt)), fmt, 4096, 9) == b'step1-vda'
    assert image_bytes_fmt(str(dest / ('disk-vda.%s' % fmt)), fmt, 8192, 9) == b'\0' * 9
    name = new_name()
    try:
        out = import_([dest], name, dest_dir=vm_dir(guest))
        assert image_bytes(out['disks'][0]['path'], 4096, 9) == b'step1-vda'
    finally:
        testbed.destroy_domain(conn, name)


# -- bad input ----------------------------------------------------------------------------------
def test_bad_export_input_is_refused_and_writes_nothing(make_guest, tmp_path):
    guest = make_guest(disks=1)
    write_markers(guest, 1)
    snap(guest, 'cp', snapshot_type='disk_only')
    r = export(guest, 'cp', tmp_path / 'x.ova', ok=False, format='ova', compatibility='esxi-5')
    assert r['failed'] and "unknown compatibility 'esxi-5'" in r['msg']
    r = export(guest, 'cp', tmp_path / 'x', ok=False, format='vdi')
    assert r['failed'] and 'vdi' in r['msg']
    r = export(guest, 'cp', tmp_path / 'x', ok=False, include_memory=True)
    assert r['failed'] and 'has no memory file' in r['msg']
    r = export(guest, 'nope', tmp_path / 'x', ok=False)
    assert r['failed'] and "no snapshot named 'nope'" in r['msg']
    r = run_task(EXPORT, dict(domain=guest.name, name='cp', dest=str(tmp_path / 'x.tar'), storage_dir=guest.storage_dir),
                 check=True)
    assert not r.get('failed') and r['changed'] is True and r['actions'], r
    assert os.listdir(tmp_path) == []           # check mode wrote nothing either

    small = tmp_path / 'small'
    small.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(small)], check=True)
    try:
        r = export(guest, 'cp', small / 'b', ok=False)
        assert r['failed'] and re.search(r'not enough free space in %s for the export: \d+ MiB needed' % small, r['msg'])
        assert os.listdir(small) == []
    finally:
        subprocess.run(['umount', str(small)], check=True)


def test_bad_import_input_is_refused_and_leaves_nothing(make_guest, conn, tmp_path):
    guest = make_guest(disks=1)
    write_markers(guest, 1)
    snap(guest, 'cp', snapshot_type='disk_only')
    good = tmp_path / 'good'
    export(guest, 'cp', good)
    export(guest, 'cp', tmp_path / 'good.tar')
    vms = tmp_path.__class__(vm_dir(guest))
    name = new_name()

    def refused(src, pattern, **args):
        if 'storage_pool' not in args:
            args['dest_dir'] = str(vms)
        r = import_(src, args.pop('domain', name), ok=False, **args)
        assert r['failed'] and re.search(pattern, r['msg']), r['msg']
        assert not os.path.exists(vms) or os.listdir(vms) == []
        assert_not_defined(conn, name)

    tampered = tmp_path / 'tampered'
    shutil.copytree(good, tampered)
    with open(tampered / 'disk-vda.qcow2', 'r+b') as f:
        f.seek(4096 * 20)
        f.write(b'X')
    refused([tampered], r'checksum mismatch for disk-vda\.qcow2')

    missing = tmp_path / 'missing'
    shutil.copytree(good, missing)
    os.unlink(missing / 'domain.xml')
    refused([missing], r'file domain\.xml listed in the manifest is missing')

    cut = tmp_path / 'cut.tar'
    data = (tmp_path / 'good.tar').read_bytes()
    cut.write_bytes(data[:len(data) - 200 * 1024])
    refused([cut], r'truncated|not a readable|missing')

    ova = tmp_path / 'x.ova'
    export(guest, 'cp', ova, format='ova')
    bare = tmp_path / 'bare.ova'
    with tarfile.open(ova) as src, tarfile.open(bare, 'w', format=tarfile.USTAR_FORMAT) as dst:
        for m in src.getmembers():
            if not m.name.endswith('.mf'):
                dst.addfile(m, src.extractfile(m))
    refused([bare], r'has no manifest \(\.mf\)')

    r = import_([good], guest.name, ok=False, dest_dir=str(vms))
    assert r['failed'] and "domain '%s' already exists" % guest.name in r['msg']
    assert guest.state == 'running'

    refused([good], r"storage pool 'nvexp-nope' does not exist", storage_pool='nvexp-nope')
    no_partials(str(tmp_path))
