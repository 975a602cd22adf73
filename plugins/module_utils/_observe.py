# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Module glue for what every changing module records: the audit line, the operation log, `timings`.

`_common.run_module` opens a Session before the task's action and closes it after, whatever the
module: one hook, so no operation audits itself. The options are documented by the
`nova.snapshots.audit` doc fragment; keep both in step.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import pwd
import socket
import sys
import time

from ansible.module_utils.basic import remove_values

from ansible_collections.nova.snapshots.plugins.module_utils.adapters import _trace as trace
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._audit_log import AuditLog, forward_to_syslog
from ansible_collections.nova.snapshots.plugins.module_utils.model._audit import matches, normalize_time, verify
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused

DEFAULT_LOG = '/var/log/nova/snapshots.log'
AUDIT_SPEC = dict(
    storage_dir=dict(type='path', default='/var/lib/nova/snapshots'),
    audit=dict(type='bool', default=True),
    audit_syslog=dict(type='bool', default=False),
    audit_syslog_address=dict(type='path', default='/dev/log'),
    audit_max_size=dict(type='int', default=10 * 2 ** 20),
    audit_keep=dict(type='int', default=10),
    audit_context=dict(type='dict'),
    log_file=dict(type='path', default=DEFAULT_LOG),
    debug=dict(type='bool', default=False),
)
CONTEXT_KEYS = ('module', 'controller_user', 'remote_user', 'awx_job_id', 'awx_user_name', 'tower_job_id',
                'tower_user_name')
# (module, state) -> the operation the audit line names; a module without states is its own operation.
OPERATIONS = {
    ('nova_snapshot', 'present'): 'create', ('nova_snapshot', 'reverted'): 'revert', ('nova_snapshot', 'absent'): 'delete',
    ('nova_snapshot_tree', 'branched'): 'branch', ('nova_snapshot_tree', 'switched'): 'switch',
    ('nova_snapshot_tree', 'merged'): 'merge', ('nova_snapshot_tree', 'absent'): 'delete_branch',
    ('nova_chain', 'consolidated'): 'consolidate', ('nova_chain', 'optimized'): 'optimize',
    ('nova_chain', 'reported'): 'report', ('nova_chain', 'validated'): 'validate',
    ('nova_policy', 'present'): 'policy_store', ('nova_policy', 'absent'): 'policy_remove',
    ('nova_policy', 'enforced'): 'enforce',
    ('nova_snapshot_verify', 'verified'): 'verify', ('nova_snapshot_verify', 'repaired'): 'repair',
    ('nova_snapshot_export', None): 'export', ('nova_snapshot_import', None): 'import',
}
READ_OPERATIONS = ('report', 'validate', 'verify')
SNAPSHOT_PARAMS = {'nova_snapshot': ('name',), 'nova_snapshot_export': ('name', 'incremental_from'),
                   'nova_snapshot_verify': ('name',), 'nova_snapshot_tree': ('from', 'result_name')}


def module_name(context):
    """The module's short name: the action plugin says it; else the AnsiballZ file the module runs from."""
    name = (context or {}).get('module') or os.path.basename(sys.argv[0] or '')
    name = name.split('.')[-1] if not name.endswith('.py') else name[:-3]
    return name[len('AnsiballZ_'):] if name.startswith('AnsiballZ_') else name


def local_who():
    """Who runs the module on the hypervisor, as the hypervisor sees it."""
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    who = dict(user=user, sudo_user=os.environ.get('SUDO_USER'),
               ssh_client=(os.environ.get('SSH_CLIENT') or '').split(' ')[0] or None)
    return dict((k, v) for k, v in who.items() if v)


def _names(items):
    return [i.get('name') for i in items or [] if isinstance(i, dict) and i.get('name')]


def touched_snapshots(name, params, result):
    """The snapshot names a task worked on: from its parameters and from what it reports."""
    found = [params.get(k) for k in SNAPSHOT_PARAMS.get(name, ())]
    snap = (result or {}).get('snapshot')
    if isinstance(snap, dict):
        found.append(snap.get('name'))
    for key in ('taken', 'pruned', 'consolidated'):
        found += _names((result or {}).get(key))
    out = []
    for n in found:
        if n and n not in out:
            out.append(n)
    return out


def touched_branches(name, params):
    if name != 'nova_snapshot_tree':
        return []
    return [params[k] for k in ('name', 'source', 'target') if params.get(k)]


class Session(object):
    """One module run: its trace (timings, operation log) and, at the end, its audit line."""

    def __init__(self, module):
        self.module = module
        p = module.params
        self.audited = 'audit' in p
        context = p.get('audit_context') or {}
        self.context = dict((k, str(v)) for k, v in context.items() if k in CONTEXT_KEYS and v not in (None, ''))
        self.name = module_name(self.context)
        self.state = p.get('state')
        self.operation = OPERATIONS.get((self.name, self.state), self.name if self.state is None else
                                        '%s_%s' % (self.name, self.state))
        self.trace = trace.start()
        self.started = time.time()
        self.trace.debug = bool(p.get('debug'))
        self.trace.secrets = sorted((str(v) for v in module.no_log_values if len(str(v)) >= 3), key=len, reverse=True)
        if self.audited and (p['audit_max_size'] < 1024 or p['audit_keep'] < 1):
            module.fail_json(msg='audit_max_size must be at least 1024 (bytes) and audit_keep at least 1; '
                             'got %s and %s; nothing was changed' % (p['audit_max_size'], p['audit_keep']))
        self.domain = p.get('domain') or p.get('domains')
        self.trace.prefix = '[%d] %s %s: ' % (os.getpid(), self.operation, self.domain or '-')
        if self.audited and not module.check_mode and p.get('log_file'):
            self.log_path = p['log_file']
            self.trace.sink = self._write_log
            self.trace.log('start (%s%s)' % (self.name, ' state=%s' % self.state if self.state else ''))
        else:
            self.log_path = None

    def _write_log(self, line):
        try:
            trace.append_line(self.log_path, line)
        except (IOError, OSError) as e:
            self.trace.sink = None
            self.module.warn('the operation log %s cannot be written (%s); set log_file to another path, '
                             'or to an empty string to turn it off' % (self.log_path, e))

    def timings(self):
        return self.trace.timings()

    def finished(self, result):
        """The module's result with `timings`, after its audit line (when it changed something)."""
        result['timings'] = self.timings()
        self.trace.log('done: changed=%s in %.3fs %s' % (bool(result.get('changed')), result['timings']['total'],
                                                         self._phases(result['timings'])))
        if result.get('changed') or (result.get('failed') and self.operation not in READ_OPERATIONS):
            self._audit(result, result.get('msg') if result.get('failed') else None)
        return result

    def failed(self, msg, details):
        """The keys of a failed task's result (its details, `timings`), after its audit line."""
        out = dict(details)
        out['timings'] = self.timings()
        self.trace.log('failed after %.3fs: %s' % (out['timings']['total'], msg))
        if self.operation not in READ_OPERATIONS:
            self._audit(dict(out, failed=True, changed=False), msg)
        return out

    @staticmethod
    def _phases(t):
        return '(%s)' % ', '.join('%s %.3fs' % (k, v) for k, v in sorted(t.items()) if k != 'total' and v)

    def parameters(self):
        """The task's parameters without anything no_log (secrets) and without audit_context (in `who`)."""
        spec = self.module.argument_spec
        params = dict((k, v) for k, v in self.module.params.items()
                      if v is not None and k != 'audit_context' and not spec.get(k, {}).get('no_log'))
        return remove_values(params, self.module.no_log_values)

    def operation_of(self, result):
        """The operation, refined by what the task did: owner/group/mode on an existing snapshot is `permissions`."""
        actions = result.get('actions') or []
        if self.operation == 'create' and actions and all(a.startswith('set permissions of') for a in actions):
            return 'permissions'
        return self.operation

    def record(self, result, msg):
        who = local_who()
        who.update((k, v) for k, v in self.context.items() if k != 'module')
        outcome = dict(changed=bool(result.get('changed')), failed=bool(result.get('failed')))
        if msg:
            outcome['msg'] = msg
        if result.get('actions'):
            outcome['actions'] = result['actions']
        return dict(time=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self.started)), host=socket.gethostname(),
                    module=self.name, state=self.state, operation=self.operation_of(result), domain=self.domain,
                    snapshots=touched_snapshots(self.name, self.module.params, result),
                    branches=touched_branches(self.name, self.module.params), who=who,
                    parameters=self.parameters(), result=remove_values(outcome, self.module.no_log_values),
                    duration=result.get('timings', {}).get('total'))

    def _audit(self, result, msg):
        p = self.module.params
        if not self.audited or self.module.check_mode:
            return
        if not p['audit']:
            self.trace.log('audit: false on this task, no audit line written')
            return
        log = AuditLog(p['storage_dir'], max_bytes=p['audit_max_size'], keep=p['audit_keep'])
        try:
            line = log.append(self.record(result, msg))
        except (IOError, OSError) as e:
            self.module.fail_json(msg='the task ran (changed=%s) but its audit line could not be written to %s: %s'
                                  % (bool(result.get('changed')), log.path, e), changed=bool(result.get('changed')),
                                  timings=self.timings())
        if p['audit_syslog']:
            try:
                forward_to_syslog(line, p['audit_syslog_address'])
            except (IOError, OSError) as e:
                self.module.warn('the audit line was written to %s but not forwarded to syslog at %s: %s'
                                 % (log.path, p['audit_syslog_address'], e))


def audit_report(p):
    """nova_audit_info: the trail's records that pass the filters, and whether its chain holds."""
    since, until = (_time_option(p, k) for k in ('since', 'until'))
    log = AuditLog(p['storage_dir'])
    files = log.read()
    records, broken = verify(files)
    if broken is not None:      # what follows a break is not trusted, but still shown, marked
        records += _after_break(files, broken)
    picked = [r for r in records if matches(r, domain=p['domain'], operation=p['operation'], who=p['who'],
                                            since=since, until=until)]
    if p['limit']:
        picked = picked[-p['limit']:]
    return dict(changed=False, records=picked, files=[path for path, _lines in files],
                lines=sum(len(lines) for _path, lines in files), verified=broken is None,
                broken=broken.to_dict() if broken else None)


def _time_option(p, key):
    if not p[key]:
        return None
    value = normalize_time(p[key])
    if value is None:
        raise Refused("%s=%r is not a time: give it as 2026-12-02, 2026-12-02T01:30 or 2026-12-02T01:30:00Z (UTC)"
                      % (key, p[key]))
    return value


def _after_break(files, broken):
    """The records from the broken line on, each marked `trusted: false` (lines that are not JSON are skipped)."""
    out = []
    seen = False
    for path, lines in files:
        for number, raw in enumerate(lines, 1):
            seen = seen or (path == broken.path and number == broken.line)
            if seen:
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    record['trusted'] = False
                    out.append(record)
    return out
