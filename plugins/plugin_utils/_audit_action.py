# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""The action plugin of every module that changes something: it tells the module who runs the task.

A module runs on the hypervisor and cannot see the play's variables. AWX and Tower put the job's id and
user in extra vars (awx_job_id, awx_user_name, tower_job_id, tower_user_name); this plugin, on the
controller, copies them and the controller's and remote user into the module's `audit_context`
option, then runs the module exactly as the `normal` action does (async included).
"""

from __future__ import annotations

import getpass

from ansible.plugins.action.normal import ActionModule as NormalAction

AWX_VARS = ('awx_job_id', 'awx_user_name', 'tower_job_id', 'tower_user_name')


def audit_context(task_vars, action, remote_user):
    """The audit context of a task: what the controller knows of who runs it."""
    context = dict((k, str(task_vars[k])) for k in AWX_VARS if task_vars.get(k) not in (None, ''))
    context['module'] = action.split('.')[-1]
    try:
        context['controller_user'] = getpass.getuser()
    except (KeyError, OSError):
        pass
    if remote_user:
        context['remote_user'] = str(remote_user)
    return context


class AuditedAction(NormalAction):
    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        remote_user = self._play_context.remote_user or task_vars.get('ansible_user')
        given = self._task.args.get('audit_context') or {}
        self._task.args['audit_context'] = dict(given, **audit_context(task_vars, self._task.action, remote_user))
        return super().run(tmp, task_vars)
