# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""What a disk's backing chain looks like and what is wrong with it, each problem with its fix.

Reads only: qemu-img info/check/map (with -U, so a running VM's images can be read) and the
domain's XML. Nothing here changes an image.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._chains import real
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Failed, NovaError, Refused

# The nova CLI's own words, so users searching for them find this.
LENGTH_WARNING = 'Snapshot chain length exceeds recommended limit'


def problem(disk, path, severity, what, fix):
    return dict(disk=disk, file=path, severity=severity, problem=what, fix=fix)


def describe_chain(view, qemu_img, top, snapshot_of):
    """{chain: [{file, format, virtual_size, actual_size, depth, snapshot}], length, overhead_percent}.

    overhead_percent is the space the layers take beyond what one flattened image would need
    (the data `qemu-img map` finds through the whole chain).
    """
    files = view.chain(top)
    chain = []
    for depth, path in enumerate(files):
        info = view.info(path)
        chain.append(dict(file=path, format=info.format, virtual_size=info.virtual_size, actual_size=info.actual_size,
                          depth=depth, snapshot=snapshot_of.get(real(path)), backing_file=info.backing_file,
                          backing_format=info.backing_format))
    fmt = view.info(top).format or 'qcow2'
    flattened = sum(e.length for e in qemu_img.map(top, fmt=fmt) if e.present and e.data)
    used = sum(c['actual_size'] or 0 for c in chain)
    overhead = round(100.0 * (used - flattened) / flattened, 1) if flattened else 0.0
    return dict(chain=chain, length=len(chain), overhead_percent=max(overhead, 0.0), base_image=files[-1] if files else None)


def check_chain(view, qemu_img, disk, top, max_length, live_files=None):
    """Problems of one disk's chain: references, formats, qemu-img check, libvirt's view, length."""
    found = []
    path = top
    seen = []
    while path:
        if not os.path.exists(path):
            below = seen[-1] if seen else None
            found.append(problem(disk, path, 'error', 'image %s is missing%s' % (path, ' (the backing file of %s)' % below if below else ''),
                                 'restore %s from a backup, or rebase %s onto the image below it' % (path, below or path)))
            return found
        seen.append(path)
        try:
            info = view.info(path)
        except NovaError as e:
            # qemu-img cannot open an image whose chain below is broken; its message names the file
            found.append(problem(disk, path, 'error', 'cannot read the chain of %s: %s' % (path, e.msg),
                                 'restore the missing backing file, or rebase %s onto an image that exists' % path))
            return found
        raw_backing = info.raw.get('backing-filename')
        if raw_backing:
            if not os.path.isabs(raw_backing):
                found.append(problem(disk, path, 'error', '%s names its backing file by the relative path %r' % (path, raw_backing),
                                     "qemu-img rebase -u -f %s -F %s -b %s %s" % (info.format, info.backing_format or 'qcow2',
                                                                                  real(info.backing_file), path)))
            if not info.backing_format:
                found.append(problem(disk, path, 'error', '%s does not record the format of its backing file, so QEMU '
                                     'would have to guess it' % path,
                                     "qemu-img rebase -u -f %s -F <format of %s> -b %s %s"
                                     % (info.format, info.backing_file, info.backing_file, path)))
        if info.format == 'qcow2':
            try:
                found += _qcow2_check(qemu_img, disk, path)
            except NovaError as e:
                found.append(problem(disk, path, 'error', 'cannot check %s: %s' % (path, e.msg),
                                     'restore the missing backing file, or rebase %s onto an image that exists' % path))
                return found
        path = info.backing_file
        if len(seen) > 1000:
            raise Failed('the chain of %s loops' % top)
    if live_files is not None and [real(f) for f in live_files] != [real(f) for f in seen]:
        found.append(problem(disk, top, 'error', "libvirt's XML shows the chain %s, the image headers say %s"
                             % (' <- '.join(live_files), ' <- '.join(seen)),
                             'restart the VM so libvirt reads the chain again, after checking which one is right'))
    if len(seen) > max_length:
        found.append(problem(disk, top, 'warning', '%s: %d images for %s, max_chain_length is %d'
                             % (LENGTH_WARNING, len(seen), disk, max_length),
                             'consolidate the chain (nova_chain state=consolidated) or delete old snapshots'))
    return found


def _qcow2_check(qemu_img, disk, path):
    result = qemu_img.check(path)
    found = []
    corrupt = (result.get('corruptions') or 0) + (result.get('check-errors') or 0)
    if corrupt:
        found.append(problem(disk, path, 'error', '%s is corrupt: %d corruptions, %d check errors'
                             % (path, result.get('corruptions') or 0, result.get('check-errors') or 0),
                             'revert to a snapshot that does not use it, or repair a copy with qemu-img check -r all'))
    if result.get('leaks'):
        found.append(problem(disk, path, 'warning', '%s has %d leaked clusters (wasted space, no data lost)'
                             % (path, result['leaks']), 'qemu-img check -r leaks -f qcow2 %s while the VM is off' % path))
    return found


def chain_details(view, path):
    """Each image of the chain under `path` as qemu-img reports it (through the operation's view)."""
    out = []
    for image in view.chain(path):
        info = view.info(image)
        out.append(dict(file=info.filename, format=info.format, virtual_size=info.virtual_size,
                        actual_size=info.actual_size, backing_file=info.backing_file,
                        internal_snapshots=info.snapshots))
    return out


def describe_disks(manager, tree, disks=None, broken_ok=False):
    """{target: describe_chain} for the selected disks; with broken_ok, a chain that cannot be read
    is empty (validation lists why)."""
    snapshot_of = dict((real(d.file_path), s.name) for s in tree.snapshots.values() for d in s.disk_files)
    dom = manager.domain_xml()
    targets = manager.target_disks(dom, disks)
    out = {}
    for disk in [d for d in dom.disks if d.target in targets]:
        try:
            out[disk.target] = describe_chain(manager.view, manager.qemu_img, disk.source_file, snapshot_of)
        except NovaError:
            if not broken_ok:
                raise
            out[disk.target] = dict(chain=[], length=0, overhead_percent=0.0, base_image=None)
    return out


def validate(manager, tree, disks=None, max_length=10):
    """Every problem of the selected disks' chains, and of snapshots whose images are gone."""
    dom = manager.domain_xml()
    targets = manager.target_disks(dom, disks)
    found = []
    for disk in [d for d in dom.disks if d.target in targets]:
        live = disk.live_chain() if manager.domain.is_active else None
        found += check_chain(manager.view, manager.qemu_img, disk.target, disk.source_file, max_length, live)
    for snap in tree.ordered():
        for d in snap.disk_files:
            if snap.has_overlays and not os.path.exists(d.file_path):
                found.append(problem(d.device, d.file_path, 'error',
                                     "snapshot '%s' cannot be reverted: its image %s is missing" % (snap.name, d.file_path),
                                     'delete the snapshot (nova_snapshot state=absent) or restore the file'))
    return found


def chain_report(manager, disks=None, validate_chains=False, max_length=10, warn=None):
    """nova_chain's reported/validated result; validation errors fail the task with the whole report."""
    tree = manager.load(write=False)[0]
    problems = validate(manager, tree, disks, max_length) if validate_chains else []
    described = describe_disks(manager, tree, disks, broken_ok=validate_chains)
    for w in [x for x in problems if x['severity'] == 'warning']:
        if warn:
            warn('%s: %s (fix: %s)' % (w['disk'], w['problem'], w['fix']))
    errors = [x for x in problems if x['severity'] == 'error']
    if errors:
        raise Refused('%d problem(s) in the chains of %s: %s' % (
            len(errors), manager.domain.name, '; '.join('%s (fix: %s)' % (e['problem'], e['fix']) for e in errors)),
            problems=problems, disks=described)
    return dict(changed=False, disks=described, problems=problems, space_saved=0)
