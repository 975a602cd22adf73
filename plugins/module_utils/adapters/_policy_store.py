# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Policies stored on the host and the shutdown queue:

    <storage_dir>/policies/<name>.json      a normalized policy (written crash-safe)
    <storage_dir>/queue/<domain>.shutdown   left by the libvirt qemu hook when a domain stops

The hook only creates queue files (a hook must never call back into libvirt); enforcing a policy
with `on_shutdown` takes the snapshot and removes the file.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import json
import os

from ansible_collections.nova.snapshots.plugins.module_utils.model._records import validate_name
from ansible_collections.nova.snapshots.plugins.module_utils.model._policy import PolicyError, parse_policy
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import replace_file


class PolicyStore(object):
    def __init__(self, storage_dir):
        self.storage_dir = storage_dir
        self.dir = os.path.join(storage_dir, 'policies')
        self.queue_dir = os.path.join(storage_dir, 'queue')

    def path(self, name):
        validate_name(name, 'policy')      # it becomes a file name: no '/', no leading '.'
        return os.path.join(self.dir, '%s.json' % name)

    def names(self):
        try:
            entries = os.listdir(self.dir)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return []
            raise
        return sorted(e[:-len('.json')] for e in entries if e.endswith('.json') and not e.startswith('.'))

    def read_raw(self, name):
        """The stored JSON as it is (for a diff), or None when there is none or it is unreadable."""
        try:
            with open(self.path(name)) as f:
                return json.load(f)
        except (IOError, OSError, ValueError):
            return None

    def load(self, name):
        """The stored policy, validated again (the file may have been edited), or None."""
        try:
            with open(self.path(name)) as f:
                data = json.load(f)
        except (IOError, OSError) as e:
            if e.errno == errno.ENOENT:
                return None
            raise
        except ValueError as e:
            raise PolicyError('the stored policy %s is not valid JSON (%s); store it again with state=present'
                              % (self.path(name), e))
        if isinstance(data, dict):
            data = dict((k, v) for k, v in data.items() if k != 'name')
        return parse_policy(data, name)

    def save(self, policy):
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir, 0o700)
        replace_file(self.path(policy['name']), json.dumps(policy, indent=1, sort_keys=True) + '\n')

    def remove(self, name):
        os.unlink(self.path(name))

    # -- shutdown queue -----------------------------------------------------------------------
    def queue_path(self, domain):
        return os.path.join(self.queue_dir, '%s.shutdown' % domain)

    def queued_since(self, domain):
        """When the domain's shutdown was queued (the file's mtime), or None."""
        try:
            return os.stat(self.queue_path(domain)).st_mtime
        except OSError:
            return None

    def dequeue(self, domain):
        try:
            os.unlink(self.queue_path(domain))
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
