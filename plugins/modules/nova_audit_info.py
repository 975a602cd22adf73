#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: nova_audit_info
short_description: Read and verify the audit trail of the snapshot store
version_added: 1.0.0
description:
  - Reads C(<storage_dir>/audit.log) and its rotated files (C(audit.log.1), ...), the trail every module
    of the collection appends one line to for each change it makes (and each failed attempt).
  - Verifies the trail's hash chain across all its files and reports the first line that breaks it
    (RV(broken) - file, line number, what is wrong) - a line edited after it was written, or a line
    deleted (the next line names a predecessor that is not there, and its sequence number jumps).
  - Filters the records by domain, operation, who and time. Records from a broken line on are still
    returned, marked C(trusted=false).
options:
  storage_dir:
    description: The collection's store directory, whose C(audit.log) is read.
    type: path
    default: /var/lib/nova/snapshots
  domain:
    description: Only records of this domain.
    type: str
  operation:
    description:
      - Only records of this operation (C(create), C(revert), C(delete), C(branch), C(switch), C(merge),
        C(delete_branch), C(consolidate), C(optimize), C(enforce), C(policy_store), C(policy_remove),
        C(repair), C(export), C(import), C(permissions)) or of this module (for example C(nova_snapshot)).
    type: str
  who:
    description:
      - Only records where any of the recorded names equals this (the hypervisor user, C(sudo_user),
        C(controller_user), C(remote_user), C(awx_user_name), C(awx_job_id), ...).
    type: str
  since:
    description: Only records of tasks started at or after this UTC time (C(2026-12-02), C(2026-12-02T01:30), C(2026-12-02T01:30:00Z)).
    type: str
  until:
    description: Only records of tasks started at or before this UTC time (same forms as O(since)).
    type: str
  limit:
    description: Only the last this many records that pass the filters (0 - all).
    type: int
    default: 0
  fail_on_broken:
    description: Fail the task when the chain does not verify (the result still has RV(broken) and the records).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reads only and writes nothing, in check mode or not.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to diff.
  idempotent:
    support: full
    description: Reads only.
author:
  - nova.snapshots developers (@nova-snapshots)
seealso:
  - module: nova.snapshots.nova_snapshot
  - module: nova.snapshots.nova_snapshot_info
'''

EXAMPLES = r'''
# nova snapshot audit web-server
- name: What was done to web-server this month, and is the trail intact?
  nova.snapshots.nova_audit_info:
    domain: web-server
    since: "2026-12-01"
  register: trail

- name: Stop when someone edited or deleted a line of the trail
  ansible.builtin.assert:
    that: trail.verified
    fail_msg: "audit trail broken at {{ trail.broken.file }} line {{ trail.broken.line }}: {{ trail.broken.reason }}"

- name: Every revert an AWX job of alice made
  nova.snapshots.nova_audit_info:
    operation: revert
    who: alice
'''

RETURN = r'''
records:
  description:
    - The audit records that pass the filters, oldest first. Each has C(seq), C(time) (UTC, when the task
      started), C(host), C(module), C(state), C(operation), C(domain), C(snapshots), C(who), C(parameters)
      (secrets removed), C(result) (C(changed), C(failed), C(msg), C(actions)), C(duration), C(prev) and C(hash).
    - Records read from the broken line on carry C(trusted=false).
  returned: always
  type: list
  elements: dict
verified:
  description: Whether the whole chain, across every file, holds.
  returned: always
  type: bool
broken:
  description: The first line that breaks the chain (C(file), C(line) - 1-based, C(seq), C(reason)); null when it holds.
  returned: always
  type: dict
  sample:
    file: /var/lib/nova/snapshots/audit.log
    line: 4
    seq: 4
    reason: the line was changed after it was written (its content does not match its hash)
files:
  description: The trail's files read, oldest first.
  returned: always
  type: list
  elements: str
lines:
  description: Lines read, in all files.
  returned: always
  type: int
timings:
  description: Seconds the task spent (C(total); the other phases are zero for this module, which reads files only).
  returned: always
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nova.snapshots.plugins.module_utils._observe import Session, audit_report
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NovaError


def main():
    module = AnsibleModule(argument_spec=dict(
        storage_dir=dict(type='path', default='/var/lib/nova/snapshots'), domain=dict(type='str'),
        operation=dict(type='str'), who=dict(type='str'), since=dict(type='str'), until=dict(type='str'),
        limit=dict(type='int', default=0), fail_on_broken=dict(type='bool', default=False),
    ), supports_check_mode=True)
    session = Session(module)
    try:
        result = audit_report(module.params)
    except NovaError as e:
        module.fail_json(msg=e.msg, timings=session.timings())
    result['timings'] = session.timings()
    if module.params['fail_on_broken'] and not result['verified']:
        b = result['broken']
        module.fail_json(msg='the audit trail is broken at %s line %d: %s' % (b['file'], b['line'], b['reason']), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
