# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""nova_snapshot runs as any module does, with who runs it passed on for the audit trail (plugin_utils/_audit_action.py)."""

from __future__ import annotations

from ansible_collections.nova.snapshots.plugins.plugin_utils._audit_action import AuditedAction


class ActionModule(AuditedAction):
    pass
