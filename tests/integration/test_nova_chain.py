# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova_chain info and validated on real chains, healthy and broken on purpose."""

from __future__ import annotations

import os
import subprocess

from testbed import guest_task

CHAIN = 'nova.snapshots.nova_chain'


def task(module, guest, **args):
    return guest_task(module, guest, **args)


def test_info_and_validation_of_a_chain(make_guest):
    guest = make_guest(disks=1)
    for name in ('c1', 'c2', 'c3'):
        made = task('nova.snapshots.nova_snapshot', guest, name=name, snapshot_type='disk_only')
        assert not made.get('failed'), made['msg']

    info = task(CHAIN, guest)
    assert not info.get('failed'), info.get('msg')
    vda = info['disks']['vda']
    assert vda['length'] == 4
    assert [c['snapshot'] for c in vda['chain']] == [None, 'c3', 'c2', 'c1']
    assert [c['depth'] for c in vda['chain']] == [0, 1, 2, 3] and vda['chain'][-1]['file'] == guest.disks['vda']
    assert vda['overhead_percent'] >= 0 and info['problems'] == [] and info['changed'] is False

    clean = task(CHAIN, guest, state='validated')
    assert not clean.get('failed') and clean['problems'] == []

    long = task(CHAIN, guest, state='validated', max_chain_length=3)
    assert not long.get('failed')
    assert [p['severity'] for p in long['problems']] == ['warning']
    assert long['problems'][0]['problem'].startswith('Snapshot chain length exceeds recommended limit: 4 images for vda')
    assert any('Snapshot chain length exceeds recommended limit' in w for w in long['warnings'])

    # a relative backing reference, written the way a hand-made overlay would have it
    guest.stop()
    active = vda['chain'][0]['file']
    frozen = vda['chain'][1]['file']
    relative = os.path.relpath(frozen, os.path.dirname(active))
    subprocess.run(['qemu-img', 'rebase', '-u', '-f', 'qcow2', '-F', 'qcow2', '-b', relative, active], check=True)
    broken = task(CHAIN, guest, state='validated')
    assert broken['failed'] is True
    assert [p['problem'] for p in broken['problems']] == ['%s names its backing file by the relative path %r' % (active, relative)]
    assert broken['problems'][0]['fix'] == 'qemu-img rebase -u -f qcow2 -F qcow2 -b %s %s' % (frozen, active)
    subprocess.run(broken['problems'][0]['fix'].split(), check=True)          # the fix given works
    assert task(CHAIN, guest, state='validated')['problems'] == []

    # a missing image in the middle of the chain: named, and the snapshot that needs it too
    middle = vda['chain'][2]['file']
    os.rename(middle, middle + '.away')
    try:
        missing = task(CHAIN, guest, state='validated')
        assert missing['failed'] is True
        texts = [p['problem'] for p in missing['problems']]
        assert any(middle in text for text in texts if "snapshot 'c2'" not in text), texts   # (ids may contain 'c2')
        assert "snapshot 'c2' cannot be reverted: its image %s is missing" % middle in texts
    finally:
        os.rename(middle + '.away', middle)
