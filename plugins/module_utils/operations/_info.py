# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Reports of snapshots (nova_snapshot_info): read-only, in check mode or not.

Nothing here writes: snapshots made outside the collection (with virsh) are listed from libvirt and
reported as not adopted; the next changing operation on the domain adopts them into the store.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import DomainGone, DomainNotFound, NovaError
from ansible_collections.nova.snapshots.plugins.module_utils.model._query import tree_queries
from ansible_collections.nova.snapshots.plugins.module_utils.operations._branches import TreeManager
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import disk_usage
from ansible_collections.nova.snapshots.plugins.module_utils.operations._chain_health import chain_details


def domain_report(manager, selection, details=False):
    """(tree, {state, current}, not adopted names, [records]) of one domain."""
    tree, not_adopted = manager.load(write=False)
    current = tree.snapshots.get(tree.current)
    summary = dict(state=manager.domain.state, current=current.name if current else None)
    records = []
    for snap in tree.ordered():
        if not selection.matches(snap):
            continue
        record = manager.describe(tree, snap)
        record['parent'] = record['parent_name']
        if details:     # the nova design's `inspect --show-internals`
            for disk in record['disk_files']:
                disk['chain'] = chain_details(manager.view, disk['file_path'])
            record['chain_length'] = dict((d['device'], len(d['chain'])) for d in record['disk_files'])
            record['memory_size_bytes'] = disk_usage(snap.memory_file) if snap.memory_file else None
        records.append(record)
    return tree, summary, not_adopted, records


def snapshot_report(open_manager, names, selection, details=False, queries=None, warn=None):
    """The report over `names` (one domain asked for by name, or every domain on the host).

    open_manager(name) gives a domain's SnapshotManager. With one named domain its errors are the
    task's; over every domain, one that vanished meanwhile is skipped and a broken one is warned
    about, so it does not hide the others.
    """
    single = len(names) == 1 and queries is not None
    result = dict(changed=False, snapshots=[], domains={}, not_adopted={})
    for name in names:
        try:
            manager = open_manager(name)
            tree, summary, not_adopted, records = domain_report(manager, selection, details)
        except (DomainNotFound, DomainGone):
            if single:
                raise
            continue        # undefined since it was listed: not there to report
        except NovaError as e:
            if single:
                raise
            if warn:
                warn("domain '%s' skipped: %s" % (name, e.msg))
            continue
        result['domains'][name] = summary
        if not_adopted:
            result['not_adopted'][name] = not_adopted
        result['snapshots'].extend(records)
    if single:
        summary = result['domains'][names[0]]
        view = TreeManager(manager).tree_view(tree)
        result.update(domain_state=summary['state'], current=summary['current'], branches=view['branches'],
                      tree_text=view['tree_text'])
        result.update(tree_queries(tree, **queries))
    return result
