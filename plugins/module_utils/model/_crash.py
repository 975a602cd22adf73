# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Named points where the integration tests kill (or hold) the module process.

A multi-step operation must survive dying between any two steps: the tests set
NOVA_SNAPSHOTS_CRASH_AT=<point> in the task's environment and check that re-running the same
task finishes the job with nothing lost. NOVA_SNAPSHOTS_HOLD_AT=<point> with
NOVA_SNAPSHOTS_HOLD_FILE=<path> makes the task wait there instead (it creates <path> and goes on
when the test removes it, after at most a minute), so a test can change the world mid-task
(undefine the domain, stop libvirtd). Unset (always, outside those tests) this does nothing.
The tests import the names below, so a renamed point cannot silently stop being tested.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import signal
import time

ENV = 'NOVA_SNAPSHOTS_CRASH_AT'
HOLD_ENV = 'NOVA_SNAPSHOTS_HOLD_AT'
HOLD_FILE_ENV = 'NOVA_SNAPSHOTS_HOLD_FILE'
HOLD_LIMIT = 60

DELETE_MERGED = 'delete-merged'               # a deleted snapshot's layer merged, libvirt not told yet
SWITCH_PLANNED = 'switch-planned'             # a switch's plan written, nothing done yet
SWITCH_RAM_SAVED = 'switch-ram-saved'         # the RAM of a VM on encrypted disks saved into tmpfs, not yet sealed
SWITCH_LEFT = 'switch-left'                   # the branch left behind saved (RAM, disks)
SWITCH_UP = 'switch-up'                       # the other branch running, the tree not yet final
MERGE_WRITTEN = 'merge-written'               # merged blocks written into the result's overlay
MERGE_RECORDED = 'merge-recorded'             # the merge result in the store, libvirt not told yet
CONSOLIDATE_MERGED = 'consolidate-merged'     # one run of layers merged, the tree not yet saved
ACTIVE_COMMIT_READY = 'active-commit-ready'   # an active commit waits for its pivot
VM_STOPPED = 'vm-stopped'                     # a revert stopped the VM, the new definition not yet in place
LEAKS_COPIED = 'verify-leaks-copied'          # a leak-repaired copy proven equal, not yet renamed over the image
MOVED_REBASED = 'verify-moved-rebased'        # the images above a moved file repointed, the records not yet
RECREATE_FILES = 'verify-recreate-files'      # a recreated snapshot's new files in place, the store not switched yet

ALL = (DELETE_MERGED, SWITCH_PLANNED, SWITCH_RAM_SAVED, SWITCH_LEFT, SWITCH_UP, MERGE_WRITTEN, MERGE_RECORDED,
       CONSOLIDATE_MERGED, ACTIVE_COMMIT_READY, VM_STOPPED, LEAKS_COPIED, MOVED_REBASED, RECREATE_FILES)


def crash_point(name):
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(HOLD_ENV) == name and os.environ.get(HOLD_FILE_ENV):
        held = os.environ[HOLD_FILE_ENV]
        with open(held, 'w') as f:
            f.write('%d\n' % os.getpid())
        deadline = time.time() + HOLD_LIMIT
        while os.path.exists(held) and time.time() < deadline:
            time.sleep(0.1)
