# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # Keep in step with operations/_jobs.py (check_io_limit, concurrent) and the modules that take these options.

    DOCUMENTATION = r'''
options:
  io_limit:
    description:
      - Bytes per second that work copying data may move (the nova design's C(--io-limit 50MB/s)).
      - It is the bandwidth of the block commits and block pulls of a running VM (each disk's job at
        most this fast), and the C(-r) rate limit of C(qemu-img commit) and C(qemu-img convert) when the
        VM is off. An offline C(qemu-img rebase) has no rate limit in QEMU and is not limited.
      - Default is no limit.
    type: int
  parallel_disks:
    description:
      - Run the block jobs of a running VM's disks at the same time (start every disk's job, then wait
        for all) instead of one disk after the other.
      - Off by default because QEMU 7.2, the one Debian 12 ships, crashes (segfault) when block jobs of
        two disks of one VM run at once. That happens with plain C(virsh blockpull) of two disks too,
        and in about half of the runs on the test guest; none of 10 runs one disk after the other
        crashed. Turn it on only with a QEMU that does not crash.
      - On one host whose disks share a filesystem it is not faster; see C(docs/benchmarks.md).
    type: bool
    default: false
'''
