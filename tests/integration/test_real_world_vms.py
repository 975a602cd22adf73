# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""VMs configured the way people configure them: disks from storage pools, disks excluded from
snapshots, transient and renamed domains, UEFI NVRAM; and reverts and switches that fail after the
VM was stopped put it back as it was. Every step is checked on the guest's own disks."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

import libvirt
import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.model import _crash as crash
from testbed import assert_ram_restored, guest_task, held_task, ticks_around

SNAP = 'nova.snapshots.nova_snapshot'
INFO = 'nova.snapshots.nova_snapshot_info'


def virsh(*args):
    return subprocess.run(['virsh', '-q', '-c', 'qemu:///system'] + list(args), check=True,
                          capture_output=True, text=True).stdout


def disk_nodes(root):
    return dict((d.find('target').get('dev'), d) for d in root.findall('devices/disk'))


@pytest.fixture
def pool(make_guest):
    """A libvirt dir pool named after a guest's directory, removed afterwards (files stay with the guest)."""
    made = []

    def make(guest):
        name = guest.name + '-pool'
        virsh('pool-define-as', name, 'dir', '--target', guest.dir)
        virsh('pool-start', name)
        made.append(name)
        return name
    yield make
    for name in made:
        subprocess.run(['virsh', '-q', '-c', 'qemu:///system', 'pool-destroy', name], capture_output=True)
        subprocess.run(['virsh', '-q', '-c', 'qemu:///system', 'pool-undefine', name], capture_output=True)


def test_a_disk_from_a_storage_pool(make_guest, pool):
    guest = make_guest(disks=2, running=False)
    name = pool(guest)

    def to_volume(root):
        disk = disk_nodes(root)['vdb']
        disk.set('type', 'volume')
        source = disk.find('source')
        del source.attrib['file']
        source.set('pool', name)
        source.set('volume', 'vdb.qcow2')
    guest.redefine(to_volume)
    guest.start()
    guest.write_marker('vdb', 4096, 'in-the-pool')
    made = guest_task(SNAP, guest, ok=True, name='s1', snapshot_type='disk_only')
    assert sorted(d['device'] for d in made['snapshot']['disk_files']) == ['vda', 'vdb']
    assert [d['file_path'] for d in made['snapshot']['disk_files'] if d['device'] == 'vdb'] == [guest.disks['vdb']]
    guest.write_marker('vdb', 4096, 'after-it')
    guest_task(SNAP, guest, ok=True, name='s1', state='reverted', after='running')
    guest.wait_ready()
    assert guest.read_marker('vdb', 4096) == 'in-the-pool'
    # the volume itself was never written: the overlay went on top of it
    assert virsh('vol-list', name).count('vdb.qcow2') == 1


def test_a_block_device_disk(make_guest):
    guest = make_guest(disks=2, running=False)
    raw = os.path.join(guest.dir, 'block.raw')
    subprocess.run(['truncate', '-s', '64M', raw], check=True)
    device = subprocess.run(['losetup', '-f', '--show', raw], check=True, capture_output=True, text=True).stdout.strip()
    try:
        def to_block(root):
            disk = disk_nodes(root)['vdb']
            disk.set('type', 'block')
            disk.find('driver').set('type', 'raw')
            source = disk.find('source')
            del source.attrib['file']
            source.set('dev', device)
        guest.redefine(to_block)
        guest.start()
        guest.write_marker('vdb', 4096, 'on-the-device')
        made = guest_task(SNAP, guest, ok=True, name='s1', snapshot_type='disk_only')
        assert [(d['file_path'], d['format']) for d in made['snapshot']['disk_files'] if d['device'] == 'vdb'] == [(device, 'raw')]
        guest.write_marker('vdb', 4096, 'overlay-data')
        guest_task(SNAP, guest, ok=True, name='s1', state='reverted', after='running')
        guest.wait_ready()
        assert guest.read_marker('vdb', 4096) == 'on-the-device'
        guest_task(SNAP, guest, ok=True, name='s1', state='absent')
        assert guest.read_marker('vdb', 4096) == 'on-the-device'
    finally:
        guest.cleanup()
        subprocess.run(['losetup', '-d', device], check=False)


def test_a_disk_marked_snapshot_no_is_left_alone(make_guest):
    guest = make_guest(disks=2, running=False)
    guest.redefine(lambda root: disk_nodes(root)['vdb'].set('snapshot', 'no'))
    guest.start()
    for dev in ('vda', 'vdb'):
        guest.write_marker(dev, 4096, 'old-' + dev)
    made = guest_task(SNAP, guest, ok=True, name='s1', snapshot_type='disk_only')
    assert [d['device'] for d in made['snapshot']['disk_files']] == ['vda']
    for dev in ('vda', 'vdb'):
        guest.write_marker(dev, 4096, 'new-' + dev)
    guest_task(SNAP, guest, ok=True, name='s1', state='reverted', after='running')
    guest.wait_ready()
    # vda went back; vdb, which the domain excludes, kept its newer data
    assert guest.read_marker('vda', 4096) == 'old-vda' and guest.read_marker('vdb', 4096) == 'new-vdb'
    # naming the disk includes it explicitly
    both = guest_task(SNAP, guest, ok=True, name='s2', snapshot_type='disk_only', disks=['vda', 'vdb'])
    assert sorted(d['device'] for d in both['snapshot']['disk_files']) == ['vda', 'vdb']


def test_nothing_selected_is_refused_naming_each_disk(make_guest):
    guest = make_guest(disks=1, running=False)
    guest.redefine(lambda root: disk_nodes(root)['vda'].set('snapshot', 'no'))
    refused = guest_task(SNAP, guest, name='s1', snapshot_type='disk_only')
    assert refused['failed'] is True
    assert "has no disk a snapshot would cover (vda: marked snapshot='no'" in refused['msg'], refused['msg']
    assert not os.path.exists(os.path.join(guest.storage_dir, guest.name, 'snapshots'))


def test_a_transient_domain_is_refused_before_anything_changes(make_guest):
    guest = make_guest(disks=1)
    guest.write_marker('vda', 4096, 'before')
    guest_task(SNAP, guest, ok=True, name='s1', snapshot_type='disk_only')
    guest.write_marker('vda', 4096, 'after')
    # a running domain that is undefined is transient from now on
    guest.dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
    assert guest.dom.isPersistent() == 0
    tick = guest.tick()
    refused = guest_task(SNAP, guest, name='s1', state='reverted', after='running')
    assert refused['failed'] is True and 'is transient' in refused['msg'] and 'nothing was changed' in refused['msg']
    # the VM is still there, still running on its own disk, never stopped
    assert guest.state == 'running' and guest.wait_tick(tick + 1) > tick
    assert guest.read_marker('vda', 4096) == 'after'


def test_a_renamed_domain_keeps_its_history_and_reverts_with_ram(make_guest, run_module):
    guest = make_guest(disks=1)
    guest.write_marker('vda', 4096, 'at-snapshot')
    guest.wait_tick(3)
    _made, window = ticks_around(guest, lambda: guest_task(SNAP, guest, ok=True, name='s1', snapshot_type='memory'))
    guest.write_marker('vda', 4096, 'later')
    guest.stop()
    new_name = guest.name + '-renamed'
    guest.dom.rename(new_name, 0)
    guest.name = new_name                  # the fixture removes it by this name
    listed = run_module(INFO, domain=new_name, storage_dir=guest.storage_dir)
    assert [s['name'] for s in listed['snapshots']] == ['s1'], listed
    offset = len(guest.console())
    reverted = guest_task(SNAP, guest, ok=True, name='s1', state='reverted')
    assert reverted['changed'] is True and guest.state == 'running'
    assert_ram_restored(guest, offset, window)
    assert guest.read_marker('vda', 4096) == 'at-snapshot'


def test_uefi_nvram_is_kept_with_the_snapshot_and_internal_ones_refused(make_guest):
    guest = make_guest(disks=1, running=False)
    nvram = os.path.join(guest.dir, 'VARS.fd')
    with open(nvram, 'wb') as f:
        f.write(b'variables as they were' + bytes(4096))

    def uefi(root):
        os_ = root.find('os')
        loader = os_.makeelement('loader', readonly='yes', type='pflash')
        loader.text = '/usr/share/OVMF/OVMF_CODE_4M.fd'
        os_.append(loader)
        node = os_.makeelement('nvram')
        node.text = nvram
        os_.append(node)
    guest.redefine(uefi)
    refused = guest_task(SNAP, guest, name='inside', snapshot_type='internal')
    assert refused['failed'] is True and 'cannot take internal snapshots of such a domain' in refused['msg']
    before = hashlib.sha256(open(nvram, 'rb').read()).hexdigest()
    made = guest_task(SNAP, guest, ok=True, name='s1', snapshot_type='disk_only')
    assert made['snapshot']['nvram_file'] and os.path.exists(made['snapshot']['nvram_file'])
    with open(nvram, 'r+b') as f:
        f.write(b'variables changed later')
    guest_task(SNAP, guest, ok=True, name='s1', state='reverted', after='shutoff')
    assert hashlib.sha256(open(nvram, 'rb').read()).hexdigest() == before


def test_a_revert_that_fails_after_stopping_the_vm_puts_it_back(make_guest, tmp_path):
    guest = make_guest(disks=1)
    guest.write_marker('vda', 4096, 'at-snapshot')
    made = guest_task(SNAP, guest, ok=True, name='s1', snapshot_type='memory')
    guest.write_marker('vda', 4096, 'latest')
    disk_before = guest.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    hold = str(tmp_path / 'held')
    task = held_task(SNAP, {'domain': guest.name, 'storage_dir': guest.storage_dir, 'name': 's1', 'state': 'reverted'},
                     crash.VM_STOPPED, hold)
    # the VM is stopped now; the memory file it would restore from breaks
    memory = made['snapshot']['memory_file']
    saved = open(memory, 'rb').read()
    with open(memory, 'wb') as f:
        f.write(saved[:4096])
    os.unlink(hold)
    result = task.result()
    with open(memory, 'wb') as f:
        f.write(saved)
    assert result['failed'] is True
    assert 'put back on the disks it ran on (nothing on them was lost)' in result['msg'], result['msg']
    assert guest.state == 'running'
    guest.wait_ready()
    assert guest.read_marker('vda', 4096) == 'latest'
    assert guest.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == disk_before
    # and the revert can be done once the file is whole again
    guest_task(SNAP, guest, ok=True, name='s1', state='reverted')
    assert guest.read_marker('vda', 4096) == 'at-snapshot'


def test_a_switch_that_fails_after_saving_the_branch_left_brings_it_back(make_guest, tmp_path):
    guest = make_guest(disks=1)
    guest.write_marker('vda', 4096, 'base')
    made = guest_task(SNAP, guest, ok=True, name='start', snapshot_type='memory')
    guest_task('nova.snapshots.nova_snapshot_tree', guest, ok=True, state='branched', name='other', **{'from': 'start'})
    guest.write_marker('vda', 4096, 'main-work')
    guest.wait_tick(guest.tick() + 1)
    hold = str(tmp_path / 'held')
    lo, started = guest.tick(), time.time()
    task = held_task('nova.snapshots.nova_snapshot_tree',
                     {'domain': guest.name, 'storage_dir': guest.storage_dir, 'state': 'switched', 'name': 'other'},
                     crash.SWITCH_LEFT, hold)
    hi = lo + int(time.time() - started) + 1           # the RAM was saved before the task reached the hold
    memory = made['snapshot']['memory_file']
    saved = open(memory, 'rb').read()
    with open(memory, 'wb') as f:
        f.write(saved[:4096])              # the other branch cannot come up from it
    offset = len(guest.console())
    os.unlink(hold)
    result = task.result()
    with open(memory, 'wb') as f:
        f.write(saved)
    assert result['failed'] is True and 'is back as it was (disks and RAM); nothing was lost' in result['msg'], result
    assert guest.state == 'running'
    assert_ram_restored(guest, offset, (lo, hi))           # main resumed from the RAM just saved
    assert guest.read_marker('vda', 4096) == 'main-work'
    info = guest_task(INFO, guest, ok=True)
    assert [b['name'] for b in info['branches'] if b['active']] == ['main']
