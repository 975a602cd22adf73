# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # Keep in step with operations/_jobs.py check_io_limit and the modules that take io_limit.

    DOCUMENTATION = r'''
options:
  io_limit:
    description:
      - Bytes per second that work copying data may move (the nova design's C(--io-limit 50MB/s)).
      - It is the bandwidth of the block commits and block pulls of a running VM (the jobs of several
        disks run at the same time, each at most this fast), and the C(-r) rate limit of C(qemu-img
        commit) and C(qemu-img convert) when the VM is off. An offline C(qemu-img rebase) has no rate
        limit in QEMU and is not limited.
      - Default is no limit.
    type: int
'''
