# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test bed proves itself: every later test relies on the counter and the disk markers."""

from __future__ import annotations

import os

import libvirt
import libvirt_qemu

import testbed


def test_guest_boots_with_block_disks_and_counts(make_guest):
    guest = make_guest(disks=3)
    # wait_ready has already refused a disk that is not a block device
    first = guest.wait_tick(1)
    later = guest.wait_tick(first + 2)
    assert later >= first + 2


def test_markers_are_on_the_disks_not_in_guest_ram(guest):
    guest.write_marker('vda', 4096, 'marker-on-vda')
    guest.write_marker('vdb', 1048576, 'marker-on-vdb')
    assert guest.read_marker('vda', 4096) == 'marker-on-vda'
    assert guest.read_marker('vdb', 1048576) == 'marker-on-vdb'
    assert guest.read_marker('vdb', 4096) == ''

    # read on the host, straight from the qcow2 files, with no guest involved
    assert testbed.image_bytes(guest.disks['vda'], 4096, 13) == b'marker-on-vda'
    assert testbed.image_bytes(guest.disks['vdb'], 1048576, 13) == b'marker-on-vdb'

    # and a fresh boot (fresh RAM) reads them back
    guest.stop()
    guest.start()
    assert guest.read_marker('vda', 4096) == 'marker-on-vda'
    assert guest.read_marker('vdb', 1048576) == 'marker-on-vdb'


def test_counter_proves_ram_restore(guest, conn):
    saved_at = guest.wait_tick(3)
    save_file = os.path.join(guest.dir, 'ram.save')
    guest.dom.save(save_file)
    at_save = guest.tick()
    assert at_save >= saved_at
    offset = len(guest.console())

    conn.restore(save_file)
    guest.note_restored()
    guest.wait_tick(at_save + 2)
    after = guest.ticks_since(offset)
    # the counter resumes from the saved value; a reboot would have started again at 1
    assert after[0] in (at_save, at_save + 1), (at_save, after)

    # a cold boot does start again at 1, so the check above can fail
    guest.stop()
    offset = len(guest.console())
    guest.start()
    guest.wait_tick(1)
    assert guest.ticks_since(offset)[0] == 1


def test_guest_agent_answers_and_freezes(guest):
    assert guest.agent_port != 'none'
    assert guest.wait_agent() == {'return': {}}
    guest.dom.fsFreeze()
    assert guest.dom.fsThaw() >= 0


def test_guest_without_agent_has_no_agent(make_guest):
    guest = make_guest(agent=False)
    assert guest.agent_port == 'none'
    try:
        libvirt_qemu.qemuAgentCommand(guest.dom, '{"execute": "guest-ping"}', 2, 0)
    except libvirt.libvirtError as e:
        assert 'agent' in e.get_error_message()
    else:
        raise AssertionError('agent answered on a guest without an agent channel')
