# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # Keep in step with CONNECTION_SPEC / STORE_SPEC in plugins/module_utils/_common.py.

    DOCUMENTATION = r'''
options:
  uri:
    description:
      - The libvirt connection URI of the hypervisor, as for C(virsh -c).
      - The modules run on the managed node, so C(qemu:///system) means the hypervisor Ansible connected to.
    type: str
    default: qemu:///system
requirements:
  - libvirt-python >= 9.0 (on the managed node)
  - lxml >= 4.9 (on the managed node)
notes:
  - The managed node is the hypervisor. Install the Python requirements there, for example with the
    collection's C(requirements.txt), and point C(ansible_python_interpreter) at that Python.
'''

    STORE = r'''
options:
  storage_dir:
    description:
      - Directory of the collection's snapshot store. Each domain gets C(<storage_dir>/<domain>/) with
        its tree metadata, overlays and memory files.
    type: path
    default: /var/lib/nova/snapshots
  lock_timeout:
    description:
      - Seconds to wait for another operation on the same domain to finish before failing.
    type: int
    default: 60
'''
