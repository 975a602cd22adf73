# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # Keep in step with AUDIT_SPEC in plugins/module_utils/_observe.py (storage_dir is documented
    # by nova.snapshots.common.store, or by the module itself).

    DOCUMENTATION = r'''
options:
  audit:
    description:
      - Append one line for this task to the audit trail C(<storage_dir>/audit.log) when it changes
        something or fails (see C(docs/audit.md)). Each line is hash-chained to the one before it, so an
        edited or deleted line is found by M(nova.snapshots.nova_audit_info).
      - The trail is on unless a task (or a policy run, or C(module_defaults)) turns it off explicitly
        with V(false). Check mode never writes it.
    type: bool
    default: true
  audit_syslog:
    description:
      - Also send each audit line to the local syslog socket O(audit_syslog_address) (facility
        C(authpriv), tag C(nova.snapshots)), so a central log system keeps a copy. journald reads the
        same socket.
      - A line that cannot be forwarded is a warning; the line in C(audit.log) is written first.
    type: bool
    default: false
  audit_syslog_address:
    description:
      - Path of the syslog datagram socket O(audit_syslog=true) sends to.
    type: path
    default: /dev/log
  audit_max_size:
    description:
      - Size in bytes at which C(audit.log) is rotated to C(audit.log.1) (the older ones moving to
        C(.2), C(.3), ...). The hash chain carries across the files.
    type: int
    default: 10485760
  audit_keep:
    description:
      - How many rotated files (C(audit.log.1) ...) are kept; the oldest beyond that is removed.
    type: int
    default: 10
  audit_context:
    description:
      - Who runs the task, as the controller knows it (C(controller_user), C(remote_user), and AWX's or
        Tower's C(awx_job_id), C(awx_user_name), C(tower_job_id), C(tower_user_name)).
      - Filled in by the collection's action plugin from the play's variables; there is no need to set it.
        The module itself adds the user it runs as on the hypervisor (and C(SUDO_USER), C(SSH_CLIENT)).
    type: dict
  log_file:
    description:
      - The human-readable operation log on the hypervisor, one line per step with its duration
        (see C(docs/operation-log.md)). It never holds secrets.
      - Set to an empty string to write no operation log. Check mode writes none.
    type: path
    default: /var/log/nova/snapshots.log
  debug:
    description:
      - Also log every libvirt call, qemu-img command and store write (with its duration) to O(log_file).
    type: bool
    default: false
'''

    # Keep in step with PERMISSIONS_SPEC in plugins/module_utils/operations/_permissions.py.
    PERMISSIONS = r'''
options:
  owner:
    description:
      - Owner (name or uid) of the snapshot's directory and files (C(<storage_dir>/<domain>/snapshots/<id>/)).
      - With O(state=present), set on a new snapshot right after it is taken, or changed on an existing
        one where it differs (only that changes; C(changed) and the diff show it), as M(ansible.builtin.file) does.
      - Refused, before anything changes, when libvirt's QEMU user would lose access to an image the VM
        uses (see O(mode)).
    type: str
    version_added: 1.0.0
  group:
    description:
      - Group (name or gid) of the snapshot's directory and files; as O(owner).
    type: str
    version_added: 1.0.0
  mode:
    description:
      - Octal permission bits of the snapshot's files (for example V('0640')); the directory gets the same
        with the search bit wherever a read bit is set (V('0640') gives the directory C(0750)).
      - By default directories are C(0700) and files C(0600), owned as libvirt's QEMU user needs.
      - A mode (or owner, group) that would lock libvirt's QEMU user out is refused with a message that
        says why - the overlays a running VM writes to, the images it reads, and any directory on the
        way to an image the VM's disks use (libvirt relabels images when it starts a VM, never directories).
      - Quote it (V('0640')); an unquoted 0640 is read by YAML as the number 416, which works too.
    type: raw
    version_added: 1.0.0
'''
