# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Typed errors raised by the core. Only a module's main() turns them into fail_json."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class NovaError(Exception):
    """Base of every error the core raises on purpose; the message is shown to the user as is."""

    def __init__(self, msg, **details):
        super(NovaError, self).__init__(msg)
        self.msg = msg
        self.details = details


class ConnectionFailed(NovaError):
    def __init__(self, uri, reason):
        super(ConnectionFailed, self).__init__(
            "cannot connect to libvirt at '%s': %s" % (uri, reason), uri=uri)


class DomainNotFound(NovaError):
    def __init__(self, domain, uri):
        super(DomainNotFound, self).__init__(
            "domain '%s' does not exist on %s" % (domain, uri), domain=domain, uri=uri)


class SnapshotNotFound(NovaError):
    def __init__(self, domain, name):
        super(SnapshotNotFound, self).__init__(
            "domain '%s' has no snapshot named '%s'" % (domain, name), domain=domain, snapshot=name)


class LibvirtFailed(NovaError):
    """A libvirt call failed for a reason we did not anticipate; the message says which call."""

    def __init__(self, what, reason):
        super(LibvirtFailed, self).__init__("%s failed: %s" % (what, reason))
