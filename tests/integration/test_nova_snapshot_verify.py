# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova_snapshot_verify on real guests and real files: damage is made the way it happens (a flipped
byte on disk, a truncated file, leaked clusters, metadata deleted with virsh, a moved image) and the
module must find it, name it, and repair what can be repaired; the guest's markers prove what its
disks show afterwards."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess

from ansible_collections.nova.snapshots.plugins.module_utils.model import _crash as crash
from testbed import assert_markers, file_sha256, run_task, write_markers

VERIFY = 'nova.snapshots.nova_snapshot_verify'
SNAPSHOT = 'nova.snapshots.nova_snapshot'


def snapshot(guest, name, **args):
    args.setdefault('storage_dir', guest.storage_dir)
    result = run_task(SNAPSHOT, dict(domain=guest.name, name=name, **args))
    assert not result.get('failed'), result.get('msg')
    return result


def verify(guest, check=False, **args):
    args.setdefault('storage_dir', guest.storage_dir)
    args.setdefault('domain', guest.name)
    return run_task(VERIFY, args, check=check)


def by_name(result):
    return dict((s['name'], s) for s in result['snapshots'])


def store_tree(guest):
    with open(os.path.join(guest.storage_dir, guest.name, 'metadata.json')) as f:
        return json.load(f)


def record(guest, name):
    return [s for s in store_tree(guest)['snapshots'] if s['name'] == name][0]


def checksums(guest, name):
    path = os.path.join(guest.storage_dir, guest.name, 'snapshots', record(guest, name)['id'], 'checksums.json')
    with open(path) as f:
        return json.load(f)


def flip_allocated_byte(path):
    """Invert one byte inside a data cluster the image itself holds (not a hole, not its metadata)."""
    out = subprocess.run(['qemu-img', 'map', '--output=json', '-U', '-f', 'qcow2', path],
                         check=True, capture_output=True, text=True).stdout
    extents = [e for e in json.loads(out) if e['depth'] == 0 and e.get('data') and 'offset' in e]
    assert extents, 'no allocated cluster in %s' % path
    at = extents[0]['offset'] + 5
    with open(path, 'r+b') as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xff]))
        f.flush()
        os.fsync(f.fileno())
    return at


def flip_allocated_byte_or_data(path):
    """Like flip_allocated_byte, for a layer that may hold no data yet: give it some first."""
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P 7 0 64k', path], check=True, capture_output=True)
    return flip_allocated_byte(path)


def leak_clusters(path):
    """Leak clusters the way a crash during a qcow2 snapshot delete does: an internal snapshot's
    clusters stay referenced by refcount, but the header no longer lists the snapshot."""
    subprocess.run(['qemu-img', 'snapshot', '-c', 'leak', path], check=True)
    with open(path, 'r+b') as f:
        f.seek(60)              # nb_snapshots (u32) and snapshots_offset (u64) in the qcow2 header
        f.write(struct.pack('>IQ', 0, 0))


def virsh_snapshots(guest):
    out = subprocess.run(['virsh', '-q', '-c', 'qemu:///system', 'snapshot-list', guest.name, '--name'],
                         check=True, capture_output=True, text=True).stdout
    return sorted(x for x in out.split() if x)


def test_byte_flip_and_truncated_memory_are_found_and_named(make_guest, tmp_path):
    guest = make_guest(disks=1)
    write_markers(guest, 1)
    snapshot(guest, 's1', snapshot_type='memory', checksum='sha256')
    write_markers(guest, 2)
    taken = snapshot(guest, 's2', snapshot_type='memory', checksum='sha256')
    assert [c['algorithm'] for c in taken['checksums']] == ['sha256', 'sha256']
    write_markers(guest, 3)
    snapshot(guest, 's3', snapshot_type='disk_only')
    s1, s2 = record(guest, 's1'), record(guest, 's2')
    with open(s2['memory_file'], 'rb') as f:
        assert f.read(16) == b'LibvirtQemudSave'     # the real header the check relies on

    metrics = str(tmp_path / 'nova.prom')
    first = verify(guest, metrics_file=metrics)
    assert not first.get('failed'), first.get('msg')
    got = by_name(first)
    assert (got['s1']['status'], got['s2']['status']) == ('ok', 'ok')
    assert got['s3']['status'] == 'unverified' and got['s3']['trusted_on_first_verification']
    assert first['changed'] is True                 # s3's first checksums were recorded
    assert got['s1']['bytes_read'] == os.path.getsize(s1['disk_files'][0]['file_path']) + os.path.getsize(s1['memory_file'])
    again = verify(guest)
    assert again['changed'] is False and by_name(again)['s3']['status'] == 'ok'
    # switching to blake3 checks each file against its sha256 and records blake3, in one read
    b3 = verify(guest, checksum='blake3')
    assert not b3.get('failed'), b3.get('msg')
    assert [s['status'] for s in b3['snapshots']] == ['ok', 'ok', 'ok'] and b3['changed'] is True
    assert checksums(guest, 's1')['files'][s1['memory_file']]['algorithm'] == 'blake3'
    assert verify(guest, checksum='blake3')['changed'] is False
    with open(metrics) as f:
        text = f.read()
    assert 'nova_snapshot_count{domain="%s"} 3' % guest.name in text
    assert 'nova_snapshot_verify_ok{domain="%s",snapshot="s3"} -1' % guest.name in text

    layer = s1['disk_files'][0]['file_path']
    flip_allocated_byte(layer)
    with open(s2['memory_file'], 'r+b') as f:
        f.truncate(os.path.getsize(s2['memory_file']) - 1024 * 1024)
    broken = verify(guest, metrics_file=metrics)
    assert broken.get('failed')
    assert "snapshot 's1' of '%s': FAILED - checksum mismatch (%s)" % (guest.name, layer) in broken['msg']
    assert "snapshot 's2'" in broken['msg'] and s2['memory_file'] in broken['msg']
    got = by_name(broken)
    assert got['s1']['status'] == 'failed' and got['s1']['problems'][0]['kind'] == 'checksum_mismatch'
    assert [p['kind'] for p in got['s2']['problems']] == ['size_mismatch']
    assert got['s3']['status'] == 'ok'
    assert broken['summary']['failed_snapshots'] == ['%s/s1' % guest.name, '%s/s2' % guest.name]
    with open(metrics) as f:
        text = f.read()
    assert 'nova_snapshot_verify_ok{domain="%s",snapshot="s1"} 0' % guest.name in text
    # monitoring plays get the same report without a failure
    quiet = verify(guest, fail_on_problems=False)
    assert not quiet.get('failed') and quiet['summary']['failed'] == 2
    # the mismatch stays a mismatch, whatever the algorithm: the damaged file is never re-trusted
    assert checksums(guest, 's1')['files'][layer]['result'] == 'checksum mismatch'
    assert by_name(verify(guest, checksum='sha256'))['s1']['status'] == 'failed'
    # an unfinished save: libvirt's partial magic
    with open(s1['memory_file'], 'r+b') as f:
        f.write(b'LibvirtQemudPart')
    partial = verify(guest, name='s1')
    assert 'partial libvirt save image (LibvirtQemudPart)' in partial['msg'] and [s['name'] for s in partial['snapshots']] == ['s1']


def test_internal_snapshots_checked_without_checksums(make_guest):
    """An internal snapshot lives in the image the running VM writes: checked (-U), not checksummed,
    and qemu-img check's count of clusters in flight is a note, not a failure."""
    guest = make_guest(disks=1)
    write_markers(guest, 1)
    snapshot(guest, 'i1', snapshot_type='internal')
    write_markers(guest, 2)
    result = verify(guest, name='i*')
    assert not result.get('failed'), result.get('msg')
    assert by_name(result)['i1']['status'] == 'ok' and by_name(result)['i1']['checksums'] == []
    guest.stop()           # QEMU writes its metadata out: nothing is in flight any more
    stopped = verify(guest, name='i*')
    assert not stopped.get('failed'), stopped.get('msg')
    assert by_name(stopped)['i1']['status'] == 'ok' and by_name(stopped)['i1']['notes'] == []
    subprocess.run(['qemu-img', 'snapshot', '-d', 'i1', guest.disks['vda']], check=True)
    gone = verify(guest, name='i1')
    assert gone.get('failed') and 'holds no internal snapshot i1' in gone['msg']


def test_repairs_killed_part_way_are_finished_by_the_next_run(make_guest):
    guest = make_guest(disks=1, running=False)
    snapshot(guest, 's1', snapshot_type='disk_only')
    layer = record(guest, 's1')['disk_files'][0]['file_path']
    leak_clusters(layer)
    before = file_sha256(layer)
    killed = run_task(VERIFY, dict(domain=guest.name, storage_dir=guest.storage_dir, state='repaired'),
                      environment={crash.ENV: crash.LEAKS_COPIED})
    assert killed.get('failed')
    assert file_sha256(layer) == before                       # the original is untouched ...
    assert [f for f in os.listdir(os.path.dirname(layer)) if f.endswith('leakfix-partial')]   # ... the copy is left
    fixed = verify(guest, state='repaired')
    assert not fixed.get('failed'), fixed.get('msg')
    assert not [f for f in os.listdir(os.path.dirname(layer)) if 'partial' in f]
    assert verify(guest)['summary']['failed'] == 0

    snapshot(guest, 's2', snapshot_type='disk_only', checksum='sha256')
    snapshot(guest, 's3', snapshot_type='disk_only', checksum='sha256')
    s3 = record(guest, 's3')
    flip_allocated_byte_or_data(s3['disk_files'][0]['file_path'])
    killed = run_task(VERIFY, dict(domain=guest.name, storage_dir=guest.storage_dir, state='repaired',
                                   recreate='from_parent'),
                      environment={crash.ENV: crash.RECREATE_FILES})
    assert killed.get('failed') and record(guest, 's3') == s3      # files made, the store not switched yet
    fixed = verify(guest, state='repaired', recreate='from_parent')
    assert not fixed.get('failed'), fixed.get('msg')
    assert record(guest, 's3')['disk_files'][0]['backing_file'] == record(guest, 's2')['disk_files'][0]['file_path']
    assert verify(guest)['summary']['failed'] == 0


def test_leaked_clusters_repaired_on_a_copy(make_guest):
    guest = make_guest(disks=1)
    write_markers(guest, 1)
    guest.stop()
    snapshot(guest, 's1', snapshot_type='disk_only')
    layer = record(guest, 's1')['disk_files'][0]['file_path']
    leak_clusters(layer)
    before = file_sha256(layer)
    found = verify(guest)
    assert found.get('failed') and 'leaked clusters' in found['msg']
    plan = verify(guest, check=True, state='repaired')
    assert plan['changed'] and file_sha256(layer) == before
    assert any(x.startswith('would repair leaked clusters') for x in by_name(plan)['s1']['repairs'])
    fixed = verify(guest, state='repaired')
    assert not fixed.get('failed'), fixed.get('msg')
    assert fixed['changed'] and by_name(fixed)['s1']['status'] == 'ok'
    assert file_sha256(layer) != before
    assert not [f for f in os.listdir(os.path.dirname(layer)) if 'partial' in f]
    check = json.loads(subprocess.run(['qemu-img', 'check', '--output=json', '-f', 'qcow2', layer],
                                      capture_output=True, text=True, check=False).stdout)
    assert check.get('leaks', 0) == 0
    second = verify(guest, state='repaired')
    assert second['changed'] is False and by_name(second)['s1']['status'] == 'ok'
    guest.start()
    assert_markers(guest, 1, last=2)


def test_metadata_deleted_with_virsh_is_redefined(make_guest):
    guest = make_guest(disks=1)
    snapshot(guest, 's1', snapshot_type='disk_only')
    snapshot(guest, 's2', snapshot_type='disk_only')
    subprocess.run(['virsh', '-q', '-c', 'qemu:///system', 'snapshot-delete', guest.name, 's1', '--metadata'],
                   check=True, capture_output=True)
    assert virsh_snapshots(guest) == ['s2']
    found = verify(guest)
    assert found.get('failed') and 'no snapshot metadata' in found['msg']
    assert virsh_snapshots(guest) == ['s2']          # verification itself changed nothing
    plan = verify(guest, check=True, state='repaired')
    assert plan['changed'] and virsh_snapshots(guest) == ['s2']
    fixed = verify(guest, state='repaired')
    assert not fixed.get('failed'), fixed.get('msg')
    assert fixed['changed'] and virsh_snapshots(guest) == ['s1', 's2']
    assert guest.dom.snapshotLookupByName('s2').getParent().getName() == 's1'
    assert verify(guest, state='repaired')['changed'] is False


def test_moved_base_image_found_by_checksum_and_repointed(make_guest):
    guest = make_guest(disks=1)
    write_markers(guest, 1)
    guest.stop()
    snapshot(guest, 's1', snapshot_type='disk_only', checksum='sha256')
    snapshot(guest, 's2', snapshot_type='disk_only', checksum='sha256')
    base = guest.disks['vda']
    moved_dir = os.path.join(guest.dir, 'elsewhere')
    os.makedirs(moved_dir)
    shutil.copy(base, os.path.join(moved_dir, 'decoy.qcow2'))
    with open(os.path.join(moved_dir, 'decoy.qcow2'), 'r+b') as f:
        f.seek(-1, 2)
        f.write(b'\x01')                 # same size, other bytes: must not be taken for the base
    moved = os.path.join(moved_dir, 'vda-moved.qcow2')
    os.rename(base, moved)
    found = verify(guest)
    assert found.get('failed') and base in found['msg']
    without = verify(guest, state='repaired')
    assert without.get('failed') and any('search_paths' in x for x in by_name(without)['s1']['repairs'])
    plan = verify(guest, check=True, state='repaired', search_paths=[moved_dir])
    assert plan['changed'] and record(guest, 's1')['disk_files'][0]['file_path'] == base
    fixed = verify(guest, state='repaired', search_paths=[moved_dir])
    assert not fixed.get('failed'), fixed.get('msg')
    assert record(guest, 's1')['disk_files'][0]['file_path'] == moved
    upper = record(guest, 's2')['disk_files'][0]['file_path']
    info = json.loads(subprocess.run(['qemu-img', 'info', '--output=json', '-U', upper],
                                     check=True, capture_output=True, text=True).stdout)
    assert info['backing-filename'] == moved and info['backing-filename-format'] == 'qcow2'
    assert verify(guest)['summary']['failed'] == 0
    guest.start()
    assert_markers(guest, 1, last=2)


def test_corrupt_leaf_recreated_from_its_parent_and_boots(make_guest):
    guest = make_guest(disks=1)
    write_markers(guest, 1)
    snapshot(guest, 's1', snapshot_type='disk_only', checksum='sha256')
    write_markers(guest, 2)
    snapshot(guest, 's2', snapshot_type='disk_only', checksum='sha256')
    write_markers(guest, 3)
    s1, s2 = record(guest, 's1'), record(guest, 's2')
    flip_allocated_byte(s2['disk_files'][0]['file_path'])
    refused = verify(guest, state='repaired')
    assert refused.get('failed') and any('recreate=from_parent' in x for x in by_name(refused)['s2']['repairs'])
    plan = verify(guest, check=True, state='repaired', recreate='from_parent')
    assert plan['changed'] and record(guest, 's2') == s2
    fixed = verify(guest, state='repaired', recreate='from_parent')
    assert not fixed.get('failed'), fixed.get('msg')
    got = by_name(fixed)['s2']
    assert got['status'] in ('ok', 'unverified') and 'lost' in got['lost'] and 's1' in got['lost']
    assert checksums(guest, 's2')['recreated_from'] == s1['id']
    new = record(guest, 's2')
    assert new['disk_files'][0]['backing_file'] == s1['disk_files'][0]['file_path']
    assert verify(guest, state='repaired', recreate='from_parent')['changed'] is False
    snapshot(guest, 's2', state='reverted', after='running')
    guest.wait_ready()              # booted from the recreated snapshot's disk
    assert_markers(guest, 1, last=3)


def test_corrupt_inner_snapshot_refused_with_its_descendants(make_guest):
    guest = make_guest(disks=1)
    for k, name in enumerate(['s1', 's2', 's3', 's4'], 1):
        write_markers(guest, k)
        snapshot(guest, name, snapshot_type='disk_only', checksum='sha256')
    s2 = record(guest, 's2')
    flip_allocated_byte(s2['disk_files'][0]['file_path'])
    tree_before = store_tree(guest)
    result = verify(guest, state='repaired', recreate='from_parent')
    assert result.get('failed')
    got = by_name(result)['s2']
    refused = [p for p in got['problems'] if p['kind'] == 'refused']
    assert refused and refused[0]['affected'] == ['s3', 's4']
    assert 's3, s4' in ' '.join(got['repairs'])
    assert store_tree(guest) == tree_before


def test_bad_inputs_fail_clearly_and_change_nothing(make_guest, tmp_path):
    guest = make_guest(disks=1, running=False)
    snapshot(guest, 's1', snapshot_type='disk_only')
    snap_dir = os.path.join(guest.storage_dir, guest.name, 'snapshots', record(guest, 's1')['id'])
    listing = sorted(os.listdir(snap_dir))
    r = verify(guest, domain='novatest-nosuchdomain')
    assert r.get('failed') and "domain 'novatest-nosuchdomain' does not exist" in r['msg']
    r = verify(guest, name='nosuch')
    assert r.get('failed') and "has no snapshot named 'nosuch'" in r['msg']
    r = verify(guest, checksum='md5')
    assert r.get('failed') and 'checksum' in r['msg'] and 'md5' in r['msg']
    r = verify(guest, metrics_file='/nonexistent-dir/nova.prom')
    assert r.get('failed') and 'metrics_file' in r['msg'] and 'does not exist' in r['msg']
    os.makedirs(str(tmp_path / 'ro'))
    os.chmod(str(tmp_path / 'ro'), 0o500)
    r = verify(guest, metrics_file=str(tmp_path / 'ro' / 'sub' / 'x.prom'))
    assert r.get('failed') and 'metrics_file' in r['msg']
    r = verify(guest, io_limit=0)
    assert r.get('failed') and 'io_limit' in r['msg']
    assert sorted(os.listdir(snap_dir)) == listing      # no checksums.json was recorded by any of them


def test_corrupt_inner_snapshot_restored_from_a_copy_or_an_export_bundle(make_guest, tmp_path):
    """A snapshot with children cannot be recreated, but a verified copy of its file brings it back:
    an identical copy (an archive tier, a backup) found by checksum, or a full export bundle of it,
    whose disk is rebuilt into the layer and proven equal. The children then show what they showed."""
    guest = make_guest(disks=1)
    for k, name in enumerate(['s1', 's2', 's3'], 1):
        write_markers(guest, k)
        snapshot(guest, name, snapshot_type='disk_only', checksum='sha256')
    write_markers(guest, 4)
    exported = run_task('nova.snapshots.nova_snapshot_export', dict(
        domain=guest.name, name='s2', dest=str(tmp_path / 'exports' / 's2'), storage_dir=guest.storage_dir))
    assert not exported.get('failed'), exported.get('msg')
    layer = record(guest, 's2')['disk_files'][0]['file_path']
    recorded = checksums(guest, 's2')['files'][layer]['digest']
    os.makedirs(str(tmp_path / 'tier'))
    subprocess.run(['cp', '--sparse=always', layer, str(tmp_path / 'tier' / 'copy.qcow2')], check=True)

    # the running VM reads the layer: never swapped under it
    flip_allocated_byte(layer)
    busy = verify(guest, state='repaired', search_paths=[str(tmp_path / 'tier')])
    assert busy.get('failed') and any('the running VM reads it' in x for x in by_name(busy)['s2']['repairs']), busy
    guest.stop()

    # an identical copy: planned in check mode (nothing changes), then copied back
    plan = verify(guest, check=True, state='repaired', search_paths=[str(tmp_path / 'tier')])
    assert plan['changed'] and any('identical copy' in x for x in by_name(plan)['s2']['repairs']), by_name(plan)['s2']
    assert file_sha256(layer) != recorded
    fixed = verify(guest, state='repaired', search_paths=[str(tmp_path / 'tier')])
    assert not fixed.get('failed'), fixed.get('msg')
    assert file_sha256(layer) == recorded
    assert by_name(verify(guest))['s2']['status'] == 'ok'

    # an export bundle: the layer rebuilt from the bundle's disk (other bytes, the same disk)
    flip_allocated_byte(layer)
    fixed = verify(guest, state='repaired', search_paths=[str(tmp_path / 'exports')])
    assert not fixed.get('failed'), fixed.get('msg')
    assert any('export bundle' in x for x in by_name(fixed)['s2']['repairs']), fixed
    again = verify(guest)
    assert not again.get('failed') and all(s['status'] == 'ok' for s in again['snapshots']), again
    assert verify(guest, state='repaired', search_paths=[str(tmp_path / 'exports')])['changed'] is False
    for name, upto in (('s3', 3), ('s2', 2)):      # the child first: it builds on the rebuilt layer
        snapshot(guest, name, state='reverted', after='running')
        guest.wait_ready()
        assert_markers(guest, upto, last=4)
