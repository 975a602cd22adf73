# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""The qemu-img calls of export and import, built on the one runner (QemuImg.run).

Images are named by `json:` specs with every format stated, so QEMU never probes one, and an
image inside a tar or a chain of bundles is opened exactly as described (backing included).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os


def spec_of(path, fmt, backing=False):
    """A json: spec for image `path` of format `fmt`; backing=None cuts its chain off, False keeps
    the chain its header names, a dict gives the backing spec."""
    spec = {'driver': fmt, 'file': {'driver': 'file', 'filename': os.path.abspath(path)}}
    if backing is not False and fmt == 'qcow2':
        spec['backing'] = backing
    return spec


def name(spec):
    return 'json:' + json.dumps(spec, sort_keys=True)


class ImageCopy(object):
    def __init__(self, qemu_img):
        self.qemu_img = qemu_img

    def snapshot_source(self, disk, internal_name=None):
        """(args, spec) opening the disk a snapshot froze: the image with its chain, or the
        internal snapshot `internal_name` inside a qcow2."""
        if internal_name:
            return ['-l', 'snapshot.name=%s' % internal_name, '-f', disk.format, disk.file_path]
        return ['-f', disk.format, disk.file_path]

    def measure(self, source_args, out_fmt='qcow2'):
        out = self.qemu_img.run(*(['measure', '-U', '--output=json', '-O', out_fmt] + source_args))
        return json.loads(out)['required']

    def measure_spec(self, spec, out_fmt='qcow2'):
        return self.measure([name(spec)], out_fmt)

    def convert(self, source_args, dest, out_fmt='qcow2', compress=False, rate=None, options=None, backing=None):
        """Flatten what `source_args` shows into a new image `dest` (zeros left sparse)."""
        args = ['convert', '-q', '-U']
        if out_fmt in ('qcow2', 'raw') and not compress:
            args += ['-W']      # out-of-order writes: faster, and allowed for uncompressed targets
        if rate:
            args += ['-r', str(int(rate))]
        opts = list(options or [])
        if compress and out_fmt == 'qcow2':
            args += ['-c']
            opts.append('compression_type=zstd')
        if backing:
            args += ['-B', backing[0], '-F', backing[1]]
        args += ['-O', out_fmt]
        if opts:
            args += ['-o', ','.join(opts)]
        self.qemu_img.run(*(args + list(source_args) + [dest]))

    def convert_spec(self, spec, dest, **kw):
        self.convert([name(spec)], dest, **kw)

    def diff_layer(self, top, top_fmt, base, base_fmt, dest):
        """`dest`: a qcow2 on `base` holding exactly the clusters where the disk `top` shows differs
        from the disk `base` shows (`base` is in `top`'s chain).

        An empty overlay on `top`, safely rebased onto `base`: qemu-img compares the two views only
        where the layers between them hold data, and writes just what differs, zeros included."""
        self.qemu_img.run('create', '-q', '-f', 'qcow2', '-F', top_fmt, '-b', os.path.abspath(top), dest)
        self.qemu_img.run('rebase', '-q', '-U', '-f', 'qcow2', '-F', base_fmt, '-b', os.path.abspath(base), dest)

    def set_backing_name(self, path, backing_name, backing_fmt='qcow2'):
        """Only rewrite the header's backing name (the bytes stay as they are)."""
        self.qemu_img.run('rebase', '-q', '-u', '-f', 'qcow2', '-F', backing_fmt, '-b', backing_name, path)

    def own_bytes(self, path):
        """Bytes `path` holds itself (data or zero clusters), its backing left out."""
        out = self.qemu_img.run('map', '--output=json', '-U', name(spec_of(path, 'qcow2', backing=None)))
        return sum(e['length'] for e in json.loads(out) if e.get('present', True) and (e.get('data') or e.get('zero'))
                   and e.get('depth', 0) == 0)

    def virtual_size(self, spec):
        return json.loads(self.qemu_img.run('info', '--output=json', '-U', name(spec)))['virtual-size']

    def info(self, path, fmt):
        return json.loads(self.qemu_img.run('info', '--output=json', '-U', '-f', fmt, path))

    def same(self, spec_a, spec_b):
        """Whether the two disks are byte for byte equal (qemu-img compare, strict about sizes)."""
        return self.qemu_img.compare(name(spec_a), name(spec_b))
