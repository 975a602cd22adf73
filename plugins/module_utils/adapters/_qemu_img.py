# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""One runner for every qemu-img call.

Always: explicit -f/-F (QEMU never guesses a format), absolute backing paths, --output=json
parsed into small objects, -U (--force-share) when reading an image a running guest may hold,
LC_ALL=C. `run_command` has the signature of AnsibleModule.run_command, so tests can replace it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._trace import traced_runner
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Failed


class QemuImgFailed(Failed):
    """qemu-img (or another command run through the runner) failed; the message has its command line."""


# The id of the secret object that holds a domain's key in every keyed qemu-img call
# (adapters/_keyed_images.py): a json: image name with it is one the collection wrote.
SECRET_ID = 'nova-key0'
_FORMAT_KEYS = frozenset(('driver', 'file', 'backing', 'encrypt', 'key-secret'))


def _unflatten(node):
    """{'encrypt.key-secret': k} as {'encrypt': {'key-secret': k}} (qemu-img names a keyed layer so)."""
    out = {}
    for key, value in node.items():
        value = _unflatten(value) if isinstance(value, dict) else value
        head, _dot, rest = key.partition('.')
        if rest:
            out.setdefault(head, {})
            if isinstance(out[head], dict):
                out[head].update(_unflatten({rest: value}))
        else:
            out[key] = value
    return out


def plain_filename(name):
    """The path a `json:` image name of the collection's own making opens, or `name` as it is.

    A keyed rebase onto a LUKS backing has to give qemu-img the new backing as a keyed json: chain,
    and qemu-img writes that name into the header; a second, header-only rebase writes the plain
    path (KeyedQemuImg.rebase). A run killed between the two leaves the json: name, which names the
    same image as the path inside it: read as that path, the chain stays readable (and check mode
    reads it right) until the next keyed write puts the path back (KeyedQemuImg settles it).
    Only names with the collection's secret id and nothing but format and file nodes are read so."""
    if not name or not name.startswith('json:') or SECRET_ID not in name:
        return name
    try:
        node = _unflatten(json.loads(name[len('json:'):]))
    except (ValueError, AttributeError):
        return name
    while isinstance(node, dict) and node.get('driver') in ('qcow2', 'luks', 'raw') and not set(node) - _FORMAT_KEYS:
        node = node.get('file')
    if isinstance(node, dict) and node.get('driver', 'file') == 'file' and set(node) <= {'driver', 'filename'}:
        filename = node.get('filename')
        if isinstance(filename, str) and os.path.isabs(filename):
            return filename
    return name


class ImageInfo(object):
    def __init__(self, data):
        self.filename = plain_filename(data.get('filename'))
        self.format = data.get('format')
        self.virtual_size = data.get('virtual-size')
        self.actual_size = data.get('actual-size')
        # the name the header holds, and the image it names (they differ after a killed keyed rebase)
        self.header_backing = data.get('full-backing-filename') or data.get('backing-filename')
        self.backing_file = plain_filename(self.header_backing)
        self.backing_format = data.get('backing-filename-format')
        self.snapshots = [s.get('name') for s in data.get('snapshots', [])]
        self.cluster_size = data.get('cluster-size')
        self.raw = data


class MapExtent(object):
    """One entry of `qemu-img map --output=json`.

    `depth` is the index in the backing chain of the image the bytes come from (0: the image mapped
    itself); `present` is false where no image of the chain has the range allocated.
    """

    def __init__(self, data):
        self.start = data['start']
        self.length = data['length']
        self.depth = data['depth']
        self.data = data.get('data', False)
        self.zero = data.get('zero', False)
        self.present = data.get('present', True)
        self.offset = data.get('offset')     # where the bytes lie, raw, in the layer at `depth` (if they do)


def byte_window(path, fmt, offset, length):
    """A `json:` filename that opens bytes [offset, offset+length) of the disk `path` shows as a raw image.

    The format of `path` is stated (its backing chain comes from its header, which always names formats);
    json.dumps quotes any path safely.
    """
    spec = {'driver': 'raw', 'offset': offset, 'size': length,
            'file': {'driver': fmt, 'file': {'filename': os.path.abspath(path)}}}
    return 'json:' + json.dumps(spec, sort_keys=True)


class QemuImg(object):
    def __init__(self, run_command, binary='qemu-img'):
        self._run_command = traced_runner(run_command)     # timings and the operation log
        self.binary = binary

    def run(self, *args):
        cmd = [self.binary] + [str(a) for a in args]
        rc, out, err = self._run_command(cmd, environ_update={'LC_ALL': 'C'})
        if rc != 0:
            raise QemuImgFailed('%s failed (rc=%d): %s' % (' '.join(cmd), rc, (err or out).strip()))
        return out

    def run_status(self, *args):
        """(rc, stdout, stderr) of qemu-img `args`, for subcommands whose exit code is a verdict (check, compare)."""
        return self._run_command([self.binary] + [str(a) for a in args], environ_update={'LC_ALL': 'C'})

    def info(self, path, fmt=None):
        args = ['info', '--output=json', '-U']
        if fmt:
            args += ['-f', fmt]
        return ImageInfo(json.loads(self.run(*(args + [path]))))

    def chain(self, path, fmt=None):
        """[ImageInfo] from `path` down to the base image."""
        args = ['info', '--output=json', '-U', '--backing-chain']
        if fmt:
            args += ['-f', fmt]
        try:
            return [ImageInfo(d) for d in json.loads(self.run(*(args + [path])))]
        except QemuImgFailed as e:
            if 'json:' not in e.msg:
                raise
        # a header naming its backing by a keyed json: chain (plain_filename) that qemu-img cannot
        # open without the key: the chain is read header by header, each naming the next image
        infos = [self.info(path, fmt)]
        while infos[-1].backing_file and len(infos) < 10000:
            infos.append(self.info(infos[-1].backing_file, infos[-1].backing_format))
        return infos

    def map(self, path, fmt='qcow2'):
        """[MapExtent] covering the whole disk `path` shows, read through its backing chain."""
        return [MapExtent(d) for d in json.loads(self.run('map', '--output=json', '-U', '-f', fmt, path))]

    def extract(self, path, fmt, offset, length, dest):
        """Bytes [offset, offset+length) of the disk `path` shows into a new raw file `dest` (sparse where zero)."""
        self.run('convert', '-U', '-f', 'raw', '-O', 'raw', byte_window(path, fmt, offset, length), dest)

    def copy_bytes(self, source, source_fmt, dest, dest_fmt, offset, length):
        """Write bytes [offset, offset+length) of the disk `source` shows into `dest` at the same offset.

        `qemu-img convert -n` between two byte windows: it streams with bounded buffers, writes zeros as
        zeros (the image below `dest` does not show through) and leaves the rest of `dest` as it was.
        (`qemu-img dd` is no help here: QEMU 7.2 counts `count` from the start of the input, not from `skip`.)
        """
        self.run('convert', '-U', '-n', '-f', 'raw', '-O', 'raw',
                 byte_window(source, source_fmt, offset, length), byte_window(dest, dest_fmt, offset, length))

    def create_overlay(self, path, backing, backing_format):
        if not os.path.isabs(backing):
            raise QemuImgFailed('refusing a relative backing path %r for %s' % (backing, path))
        old = os.umask(0o077)       # the overlay is 0600 from the start, not created open and narrowed later
        try:
            self.run('create', '-q', '-f', 'qcow2', '-F', backing_format, '-b', backing, path)
        finally:
            os.umask(old)

    def rebase(self, path, backing, backing_format, fmt='qcow2', unsafe=False):
        """Safe rebase: `path` keeps what a guest sees while its backing becomes `backing` (or none).

        unsafe=True only rewrites the header: what `path` does not hold itself then comes from the
        new backing (used to carry a branch's own writes over onto a merge result).
        """
        mode = ['-u'] if unsafe else []
        if backing is None:
            self.run(*(['rebase', '-q'] + mode + ['-f', fmt, '-b', '', path]))
        else:
            self.run(*(['rebase', '-q'] + mode + ['-f', fmt, '-F', backing_format, '-b', backing, path]))

    def commit(self, top, base, fmt='qcow2', rate=None):
        """Write `top` and every image between it and `base` into `base` (`top` is left as it was);
        `rate` (bytes/s) limits the copying."""
        self.run(*(['commit', '-q', '-d', '-f', fmt, '-b', base] + (['-r', int(rate)] if rate else []) + [top]))

    def measure_layer(self, path, fmt='qcow2', out_fmt='qcow2'):
        """Bytes a new image holding only `path`'s own data needs (its backing chain left out)."""
        spec = {'driver': fmt, 'file': {'driver': 'file', 'filename': os.path.abspath(path)}}
        if fmt == 'qcow2':
            spec['backing'] = None
        out = self.run('measure', '-U', '--output=json', '-O', out_fmt, 'json:' + json.dumps(spec, sort_keys=True))
        return json.loads(out)['required']

    def rewrite_layer(self, path, dest, backing, backing_format, compression=None, rate=None):
        """A new image `dest` with `path`'s own data (qcow2), on the same backing; zeros dropped,
        data compressed when `compression` is zlib or zstd; `rate` (bytes/s) limits the reading."""
        args = ['convert', '-q', '-f', 'qcow2', '-O', 'qcow2'] + (['-r', int(rate)] if rate else [])
        if compression:
            args += ['-c', '-o', 'compression_type=%s' % compression]
        if backing:
            args += ['-B', backing, '-F', backing_format]
        self.run(*(args + [path, dest]))

    def compare(self, a, b):
        """True when the disks `a` and `b` show are byte for byte equal (through their chains)."""
        rc, out, err = self._run_command([self.binary, 'compare', '-q', '-U', a, b], environ_update={'LC_ALL': 'C'})
        if rc in (0, 1):
            return rc == 0
        raise QemuImgFailed('qemu-img compare %s %s failed (rc=%d): %s' % (a, b, rc, (err or out).strip()))

    def repair_leaks(self, path, fmt='qcow2'):
        """`qemu-img check -r leaks`: free clusters no table refers to (a copy, never an image in use)."""
        self.run('check', '-q', '-r', 'leaks', '-f', fmt, path)

    def copy_sparse(self, source, dest):
        """Copy the file `source` to `dest` keeping holes, mode and owner (a tier move; not qemu-img:
        the copy must be the same file, byte for byte, header included). `dest` is removed on failure."""
        cmd = ['cp', '--sparse=always', '--preserve=mode,ownership', source, dest]
        rc, out, err = self._run_command(cmd, environ_update={'LC_ALL': 'C'})
        if rc != 0:
            if os.path.exists(dest):
                os.unlink(dest)
            raise QemuImgFailed('copying %s to %s failed: %s' % (source, dest, (err or out).strip()))

    def check(self, path, fmt='qcow2'):
        rc, out, err = self._run_command([self.binary, 'check', '--output=json', '-U', '-f', fmt, path],
                                         environ_update={'LC_ALL': 'C'})
        try:
            return json.loads(out)
        except ValueError:
            raise QemuImgFailed('qemu-img check %s failed (rc=%d): %s' % (path, rc, err.strip()))
