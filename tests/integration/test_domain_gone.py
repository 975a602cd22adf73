# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A domain undefined while a task runs: a clear error naming it, never a traceback."""

from __future__ import annotations

import os

from ansible_collections.nova.snapshots.plugins.module_utils.model import _crash as crash
from testbed import destroy_domain, guest_task, held_task


def test_domain_undefined_mid_switch_is_a_clear_error(make_guest, tmp_path):
    guest = make_guest(disks=1)
    guest_task('nova.snapshots.nova_snapshot', guest, ok=True, name='s1', snapshot_type='disk_only')
    hold = str(tmp_path / 'held')
    task = held_task('nova.snapshots.nova_snapshot_tree',
                     {'domain': guest.name, 'storage_dir': guest.storage_dir, 'state': 'branched', 'name': 'other',
                      'from': 's1', 'switch': True}, crash.SWITCH_PLANNED, hold)
    # while the task waits between writing its plan and acting on it, the VM goes away for good
    destroy_domain(guest.conn, guest.name)
    os.unlink(hold)
    result = task.result()
    assert result['failed'] is True
    assert result['msg'].startswith("domain '%s' no longer exists (it was undefined while " % guest.name), result
    assert 'module_stderr' not in result and 'Traceback' not in repr(result)
