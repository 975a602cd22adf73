# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Block jobs on a running two-disk guest: io_limit holds (block pull bandwidth), the disks take turns
(parallel_disks is off by default: QEMU 7.2 crashes when two disks' jobs run at once), and the long
tasks work in the background (async / poll: 0 / async_status).

The jobs are watched from outside, through libvirt's blockJobInfo, while the task runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import libvirt
import pytest

import testbed
from testbed import Task, guest_task

CHAIN = 'nova.snapshots.nova_chain'
MIB = 2 ** 20
DATA_MIB = 4
LIMIT = 2 * MIB             # bytes/s: DATA_MIB at LIMIT is 2 s per disk


def ok(result):
    assert not result.get('failed'), result.get('msg')
    return result


def top(guest, dev):
    from lxml import etree
    root = etree.fromstring(guest.dom.XMLDesc(0).encode())
    return root.xpath("devices/disk[target/@dev=$dev]/source/@file", dev=dev)[0]


@pytest.fixture(scope='module')
def guest_with_data(conn):
    """Two disks whose base images hold DATA_MIB MiB each (pattern 7 on vda, 9 on vdb), running on an
    overlay per disk made with virsh (an anonymous layer: the base is nobody's restore point).
    Shared by the tests of this file (one boot), which run in order."""
    guest = testbed.Guest(conn, disks=2)
    try:
        for dev, pattern in (('vda', 7), ('vdb', 9)):
            subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P %d 0 %dM' % (pattern, DATA_MIB), guest.disks[dev]],
                           check=True, capture_output=True)
        guest.start()
        specs = []
        for dev in ('vda', 'vdb'):
            specs += ['--diskspec', '%s,file=%s' % (dev, os.path.join(guest.dir, 'top-%s.qcow2' % dev))]
        subprocess.run(['virsh', '-q', '-c', testbed.URI, 'snapshot-create-as', guest.name, 'layer', '--disk-only',
                        '--no-metadata', '--atomic'] + specs, check=True, capture_output=True)
        yield guest
    finally:
        guest.cleanup()


def watch(guest, task, devices=('vda', 'vdb')):
    """{dev: (first seen, last seen)} of each disk's block job while `task` runs."""
    seen = {}
    while task.proc.poll() is None:
        now = time.monotonic()
        for dev in devices:
            try:
                info = guest.dom.blockJobInfo(dev, 0)
            except libvirt.libvirtError:
                info = None
            if info:
                first, _last = seen.get(dev, (now, now))
                seen[dev] = (first, now)
        time.sleep(0.02)
    return seen


def test_io_limit_holds_and_the_disks_take_turns(guest_with_data):
    guest = guest_with_data
    bad = guest_task(CHAIN, guest, state='consolidated', max_chain_length=1, io_limit=0)
    assert bad['failed'] and 'io_limit must be a positive number of bytes per second' in bad['msg']

    task = Task(CHAIN, dict(domain=guest.name, storage_dir=guest.storage_dir, state='consolidated',
                            max_chain_length=1, method='pull', io_limit=LIMIT))
    seen = watch(guest, task)
    done = ok(task.result())
    assert [m['disk'] for m in done['merged']] == ['vda', 'vdb']
    assert done['disks']['vda']['length'] == 1 and done['disks']['vdb']['length'] == 1
    assert sorted(seen) == ['vda', 'vdb'], seen
    expected = DATA_MIB * MIB / float(LIMIT)
    for dev, (first, last) in seen.items():
        rate = DATA_MIB * MIB / (last - first)
        # the limit holds: never more than 10 % faster (a loaded host may be slower)
        assert rate <= 1.1 * LIMIT, (dev, rate, LIMIT)
        assert last - first < 4 * expected, (dev, last - first)
        assert last - first > 0.9 * expected, (dev, last - first)
    a1, b0 = seen['vda'][1], seen['vdb'][0]
    assert a1 < b0 + 0.1, 'the jobs of both disks ran at once: %r' % seen
    # the data came up into each disk's own image (no backing file left), and the guest reads it there
    for dev, pattern in (('vda', 7), ('vdb', 9)):
        assert done['disks'][dev]['chain'][0]['file'] == top(guest, dev) and done['disks'][dev]['base_image'] == top(guest, dev)
        assert guest.read(dev, 0, 16) == guest.read(dev, (DATA_MIB * MIB) - 16, 16) == bytes([pattern]) * 16
        assert guest.read(dev, DATA_MIB * MIB, 16) == bytes(16)


def test_background_tasks_with_async_status(guest_with_data, tmp_path):
    """create and consolidate under `async` + `poll: 0`, polled with async_status, as docs/troubleshooting.md shows.

    After the first test the VM's image holds all the data; the snapshot freezes it, and the
    consolidation pulls it (a restore point's layer) up into the new overlay, at io_limit."""
    guest = guest_with_data
    out = str(tmp_path / 'results.json')
    common = dict(domain=guest.name, storage_dir=guest.storage_dir)
    play = [{
        'hosts': 'localhost', 'gather_facts': False,
        'tasks': [
            {'name': 'snapshot in the background', 'nova.snapshots.nova_snapshot': dict(common, name='bg', snapshot_type='disk_only'),
             'async': 300, 'poll': 0, 'register': 'snap_job'},
            {'name': 'wait for the snapshot', 'ansible.builtin.async_status': {'jid': '{{ snap_job.ansible_job_id }}'},
             'register': 'snap', 'until': 'snap.finished', 'retries': 150, 'delay': 1},
            {'name': 'consolidate in the background',
             'nova.snapshots.nova_chain': dict(common, state='consolidated', max_chain_length=1, method='pull', io_limit=LIMIT),
             'async': 300, 'poll': 0, 'register': 'chain_job'},
            {'name': 'the job runs meanwhile', 'ansible.builtin.async_status': {'jid': '{{ chain_job.ansible_job_id }}'},
             'register': 'early'},
            {'name': 'wait for the consolidation', 'ansible.builtin.async_status': {'jid': '{{ chain_job.ansible_job_id }}'},
             'register': 'chain', 'until': 'chain.finished', 'retries': 150, 'delay': 1},
            {'name': 'save', 'ansible.builtin.copy': {'content': '{{ {"snap": snap, "early": early, "chain": chain} | to_json }}', 'dest': out}},
        ],
    }]
    playbook = str(tmp_path / ('play-%s.yml' % uuid.uuid4().hex[:6]))
    with open(playbook, 'w') as f:
        json.dump(play, f)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=testbed.COLLECTIONS, ANSIBLE_NOCOLOR='1',
               ANSIBLE_PYTHON_INTERPRETER=os.path.join(testbed.TOP, '.venv', 'bin', 'python'),
               ANSIBLE_LOCALHOST_WARNING='False', ANSIBLE_INVENTORY_UNPARSED_WARNING='False')
    proc = subprocess.run([os.path.join(testbed.TOP, '.venv', 'bin', 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
                           playbook], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    with open(out) as f:
        results = json.load(f)
    snap, early, chain = results['snap'], results['early'], results['chain']
    assert snap['finished'] and snap['changed'] and snap['snapshot']['name'] == 'bg'
    assert early['finished'] == 0         # io_limit keeps it running for a few seconds: polled while it ran
    assert chain['finished'] and chain['changed'] and chain['disks']['vda']['length'] == 1
    assert guest.dom.snapshotListNames() == ['bg']
    assert guest.state == 'running', (chain, snap)
    for dev, pattern in (('vda', 7), ('vdb', 9)):
        assert guest.read(dev, 0, 16) == bytes([pattern]) * 16
