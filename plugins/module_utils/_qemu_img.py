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

from ansible_collections.nova.snapshots.plugins.module_utils._errors import NovaError


class QemuImgFailed(NovaError):
    pass


class ImageInfo(object):
    def __init__(self, data):
        self.filename = data.get('filename')
        self.format = data.get('format')
        self.virtual_size = data.get('virtual-size')
        self.actual_size = data.get('actual-size')
        backing = data.get('full-backing-filename') or data.get('backing-filename')
        self.backing_file = backing
        self.backing_format = data.get('backing-filename-format')
        self.snapshots = [s.get('name') for s in data.get('snapshots', [])]
        self.raw = data


class QemuImg(object):
    def __init__(self, run_command, binary='qemu-img'):
        self._run_command = run_command
        self.binary = binary

    def run(self, *args):
        cmd = [self.binary] + [str(a) for a in args]
        rc, out, err = self._run_command(cmd, environ_update={'LC_ALL': 'C'})
        if rc != 0:
            raise QemuImgFailed('%s failed (rc=%d): %s' % (' '.join(cmd), rc, (err or out).strip()))
        return out

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
        return [ImageInfo(d) for d in json.loads(self.run(*(args + [path])))]

    def create_overlay(self, path, backing, backing_format):
        if not os.path.isabs(backing):
            raise QemuImgFailed('refusing a relative backing path %r for %s' % (backing, path))
        self.run('create', '-q', '-f', 'qcow2', '-F', backing_format, '-b', backing, path)

    def rebase(self, path, backing, backing_format, fmt='qcow2'):
        """Safe rebase: `path` keeps what a guest sees while its backing becomes `backing` (or none)."""
        if backing is None:
            self.run('rebase', '-q', '-f', fmt, '-b', '', path)
        else:
            self.run('rebase', '-q', '-f', fmt, '-F', backing_format, '-b', backing, path)

    def check(self, path, fmt='qcow2'):
        rc, out, err = self._run_command([self.binary, 'check', '--output=json', '-U', '-f', fmt, path],
                                         environ_update={'LC_ALL': 'C'})
        try:
            return json.loads(out)
        except ValueError:
            raise QemuImgFailed('qemu-img check %s failed (rc=%d): %s' % (path, rc, err.strip()))
