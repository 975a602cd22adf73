# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Named points where the integration tests kill the module process (SIGKILL, like kill -9).

A multi-step operation must survive dying between any two steps: the tests set
NOVA_SNAPSHOTS_CRASH_AT=<point> in the task's environment and check that re-running the same
task finishes the job with nothing lost. Unset (always, outside those tests) this does nothing.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import signal


def crash_point(name):
    if os.environ.get('NOVA_SNAPSHOTS_CRASH_AT') == name:
        os.kill(os.getpid(), signal.SIGKILL)
