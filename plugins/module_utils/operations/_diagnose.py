# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""`nova snapshot diagnose web-server --performance`: why a VM's disks are slow, each finding with its fix.

Per disk: the chain's depth and how many of its layers reads are served from (`qemu-img map`),
each image's fragmentation (`qemu-img check`: fragmented of allocated clusters), the storage each
image lives on (rotational or not, and which of the domain's tiers), a block job running, and the
guest's disk settings (cache, io, discard, bus). Reads only (qemu-img with -U).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._chains import real
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._disk_settings import DiskSettings, storage_kind
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NovaError
from ansible_collections.nova.snapshots.plugins.module_utils.operations._chain_health import LENGTH_WARNING, describe_disks, problem

FRAGMENTED_PERCENT = 50.0       # warn above this share of fragmented clusters ...
FRAGMENTED_MIN_CLUSTERS = 64    # ... in an image holding at least this many


def _tier(store, path):
    for directory in store.tier_dirs():
        if real(path).startswith(real(directory) + os.sep):
            return directory
    if store.owns(path):
        return store.root
    return os.path.dirname(path)


def _image(m, path, depth, snapshot_of):
    info = m.view.info(path)
    entry = dict(file=path, depth=depth, format=info.format, actual_size=info.actual_size,
                 snapshot=snapshot_of.get(real(path)), allocated_clusters=None, fragmented_clusters=None,
                 fragmentation_percent=None, storage=dict(storage_kind(path), directory=_tier(m.store, path)))
    if info.format == 'qcow2':
        try:
            check = m.qemu_img.check(path)
        except NovaError:
            check = {}
        if check:       # qemu-img leaves the counts out when they are 0 (an empty overlay)
            alloc, frag = check.get('allocated-clusters') or 0, check.get('fragmented-clusters') or 0
            entry.update(allocated_clusters=alloc, fragmented_clusters=frag,
                         fragmentation_percent=round(100.0 * frag / alloc, 1) if alloc else 0.0)
    return entry


def _settings_problems(target, top, settings, fmt):
    found = []
    cache, io = settings['cache'], settings['io']
    if cache in ('writethrough', 'directsync'):
        found.append(problem(target, top, 'warning', "cache='%s': every guest write waits for the host's disk" % cache,
                             "<driver name='qemu' type='%s' cache='none' io='native'/> in the domain XML" % fmt))
    if cache == 'unsafe':
        found.append(problem(target, top, 'warning', "cache='unsafe': a host crash loses the guest's writes",
                             "cache='none' (or 'writeback')"))
    if cache == 'none' and io not in ('native', 'io_uring'):
        found.append(problem(target, top, 'info', "cache='none' with io='%s': a thread pool carries the I/O" % (io or 'threads'),
                             "io='native' (or 'io_uring') on the <driver> element"))
    if settings['discard'] != 'unmap':
        found.append(problem(target, top, 'info', 'discard is not unmap: what the guest deletes stays allocated in the overlay',
                             "discard='unmap' on the <driver> element (and fstrim in the guest)"))
    if settings['bus'] in ('ide', 'sata', 'usb', 'scsi'):
        found.append(problem(target, top, 'warning' if settings['bus'] != 'scsi' else 'info',
                             "bus='%s' is an emulated controller, slower than virtio" % settings['bus'],
                             "<target dev='vdX' bus='virtio'/> (the guest needs virtio drivers)"))
    return found


def diagnose_disk(m, disk, max_length, snapshot_of, running, current_chain):
    top = disk.source_file
    chain = m.view.chain(top)
    images = [_image(m, p, depth, snapshot_of) for depth, p in enumerate(chain)]
    fmt = m.view.info(top).format or 'qcow2'
    extents = [e for e in m.qemu_img.map(top, fmt=fmt) if e.present and e.data]
    served = {}
    for e in extents:
        served[e.depth] = served.get(e.depth, 0) + e.length
    job = None
    if running:
        j = m.domain.block(disk.target, 1).job()
        if j is not None:
            job = dict(type=j.type, cur=j.cur, end=j.end, active_commit=j.is_active_commit)
    settings = DiskSettings(disk.root).to_dict()
    found = []
    if len(chain) > max_length:
        found.append(problem(disk.target, top, 'warning', '%s: %d images for %s, max_chain_length is %d; every read '
                             'of data below walks the chain' % (LENGTH_WARNING, len(chain), disk.target, max_length),
                             'nova_chain state=consolidated max_chain_length=%d (nova snapshot consolidate --auto)' % max_length))
    for img in images:
        if (img['fragmentation_percent'] or 0) > FRAGMENTED_PERCENT and (img['allocated_clusters'] or 0) >= FRAGMENTED_MIN_CLUSTERS:
            fix = ('nova_chain state=optimized (rewrites frozen layers in order)' if img['depth'] else
                   'take a snapshot and consolidate later, or qemu-img convert the image while the VM is off')
            what = '%s is fragmented: %s of %s allocated clusters (%s%%) are out of order' % (
                img['file'], img['fragmented_clusters'], img['allocated_clusters'], img['fragmentation_percent'])
            found.append(problem(disk.target, img['file'], 'warning', what, fix))
        if img['storage']['rotational'] and real(img['file']) in current_chain:
            found.append(problem(disk.target, img['file'], 'warning', 'the VM reads %s from rotational (slow) storage'
                                 % img['file'], 'nova_chain state=consolidated active_storage=<a directory on SSD> '
                                 '(moves layers the VM reads; while the VM is off for the ones it holds open)'))
    if job:
        found.append(problem(disk.target, top, 'warning', 'a block job runs on %s (%s of %s bytes): the guest shares the '
                             'disk with it' % (disk.target, job['cur'], job['end']),
                             'let it finish; one left by a killed run is settled by nova_chain state=consolidated'))
    found += _settings_problems(disk.target, top, settings, fmt)
    report = dict(chain_length=len(chain), images=images, layers_read=len(served),
                  bytes_read_per_depth=dict((str(d), n) for d, n in sorted(served.items())),
                  map_extents=len(extents), block_job=job, settings=settings,
                  base_image=chain[-1])
    return report, found


def diagnose(manager, disks=None, max_length=10):
    """nova_chain state=diagnosed: per disk its performance report, and the findings with fixes."""
    m = manager
    tree = m.load(write=False)[0]
    snapshot_of = dict((real(d.file_path), s.name) for s in tree.snapshots.values() for d in s.disk_files)
    dom = m.domain_xml()
    targets = m.target_disks(dom, disks)
    running = m.domain.is_active
    current_chain = set()
    for top in m.active_tops():
        current_chain.update(real(p) for p in m.view.chain(top))
    reports, problems = {}, []
    for disk in [d for d in dom.disks if d.target in targets and d.source_file]:
        reports[disk.target], found = diagnose_disk(m, disk, max_length, snapshot_of, running, current_chain)
        problems += found
    return dict(changed=False, diagnosis=reports, problems=problems, space_saved=0,
                disks=describe_disks(m, tree, disks, broken_ok=True))
