# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""What every module shares: the common options, the dependency check, error reporting.

The options here are documented by the `nova.snapshots.common` doc fragment; keep both in step.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.nova.snapshots.plugins.module_utils._observe import AUDIT_SPEC, Session
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import QemuImg
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NovaError
from ansible_collections.nova.snapshots.plugins.module_utils.operations._jobs import check_io_limit
from ansible_collections.nova.snapshots.plugins.module_utils.operations._snapshots import SnapshotManager
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._libvirt import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    Hypervisor,
)
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._xml import (
    HAS_LXML,
    LXML_IMPORT_ERROR,
)

CONNECTION_SPEC = dict(
    uri=dict(type='str', default='qemu:///system'),
)

STORE_SPEC = dict(
    storage_dir=dict(type='path', default='/var/lib/nova/snapshots'),
    lock_timeout=dict(type='int', default=60),
)


def argument_spec(store=False, audited=False, **options):
    """The module's own options merged with the shared ones (the store's only where it is used; the
    audit trail's and operation log's, doc fragment nova.snapshots.audit, in modules that change things)."""
    spec = dict(CONNECTION_SPEC)
    if store:
        spec.update(STORE_SPEC)
    if audited:
        spec.update(AUDIT_SPEC)
    spec.update(options)
    return spec


def check_requirements(module):
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib('libvirt-python'), exception=LIBVIRT_IMPORT_ERROR)
    if not HAS_LXML:
        module.fail_json(msg=missing_required_lib('lxml'), exception=LXML_IMPORT_ERROR)


def snapshot_manager(module, hypervisor, domain=None):
    """The engine for the module's domain (or `domain`), built from the shared options."""
    p = module.params
    manager = SnapshotManager(hypervisor, domain or p['domain'], p['storage_dir'], QemuImg(module.run_command),
                              lock_timeout=p['lock_timeout'], job_timeout=p.get('job_timeout') or 600)
    manager.io_limit = check_io_limit(p.get('io_limit'))    # modules with the nova.snapshots.block_jobs fragment
    manager.parallel_disks = bool(p.get('parallel_disks'))
    return manager


def run_plan(module, planner, finish=None):
    """Run planner(manager, tree, params) -> Plan on the module's domain, in check mode or not, and
    exit with the result; finish(manager, result) adds the module's own keys."""
    def action(hypervisor):
        manager = snapshot_manager(module, hypervisor)
        result = manager.run(module.check_mode, lambda tree: planner(manager, tree, module.params))
        if finish is not None:
            finish(manager, result)
        return result
    run_module(module, action)


def run_module(module, action):
    """Run action(hypervisor) and exit with its result dict; a NovaError becomes a clear failure, and so
    does a result with `failed: true`. Every result has `timings`; a change or failure is audited (_observe)."""
    check_requirements(module)
    session = Session(module)
    hypervisor = Hypervisor(module.params['uri'])
    try:
        result = action(hypervisor)
    except NovaError as e:
        module.fail_json(msg=e.msg, **session.failed(e.msg, e.details))
    except Exception as e:
        session.failed('unexpected error: %s' % e, {})
        raise
    finally:
        hypervisor.close()
    result = session.finished(result)
    if result.pop('failed', False):
        module.fail_json(**result)
    module.exit_json(**result)
