# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Typed errors raised by the core. Only a module's main() turns them into fail_json.

Two families, so that callers such as the policy engine can tell them apart:
- Refused: the request cannot be carried out as asked (bad input, not found, no space, a conflict
  with what exists, a lock held elsewhere). Nothing was changed.
- Failed: something went wrong while carrying it out (libvirt, qemu-img, the store). The message
  says which step failed and what state things are in.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class NovaError(Exception):
    """Base of every error the core raises on purpose; the message is shown to the user as is."""

    def __init__(self, msg, **details):
        super(NovaError, self).__init__(msg)
        self.msg = msg
        self.details = details


class Refused(NovaError):
    """The request was refused before anything changed."""


class NotFound(Refused):
    """A domain, snapshot, branch, policy or file the request names does not exist."""


class InsufficientSpace(Refused):
    """A filesystem cannot hold what an operation would write; raised before writing."""

    def __init__(self, directory, need, free, what):
        super(InsufficientSpace, self).__init__(
            'not enough free space in %s: %d MiB needed for %s, %d MiB free; nothing was changed'
            % (directory, need // 2 ** 20, what, free // 2 ** 20), directory=directory, needed=need, free=free)


class Conflict(Refused):
    """The request contradicts what exists (same name, other settings; a held lock; a merge conflict)."""


class Failed(NovaError):
    """A step failed while the operation ran; the message names the step."""


class ConnectionFailed(Failed):
    def __init__(self, uri, reason):
        super(ConnectionFailed, self).__init__(
            "cannot connect to libvirt at '%s': %s" % (uri, reason), uri=uri)


class DomainNotFound(NotFound):
    def __init__(self, domain, uri):
        super(DomainNotFound, self).__init__(
            "domain '%s' does not exist on %s" % (domain, uri), domain=domain, uri=uri)


class DomainGone(Failed):
    """The domain disappeared (undefined, or a transient one stopped) while the task ran."""

    def __init__(self, domain, what):
        super(DomainGone, self).__init__(
            "domain '%s' no longer exists (it was undefined while %s)" % (domain, what), domain=domain)


class SnapshotNotFound(NotFound):
    def __init__(self, domain, name):
        super(SnapshotNotFound, self).__init__(
            "domain '%s' has no snapshot named '%s'" % (domain, name), domain=domain, snapshot=name)


class ConnectionLost(Failed):
    """libvirtd went away mid-task (stopped, restarted, crashed): QEMU runs on, the task stops."""

    def __init__(self, what, reason):
        super(ConnectionLost, self).__init__(
            "lost the connection to libvirtd while %s (was libvirtd stopped or restarted?): %s. "
            "Run the task again once libvirtd is back: it finishes or undoes what this run began" % (what, reason))


class LibvirtFailed(Failed):
    """A libvirt call failed for a reason we did not anticipate; the message says which call."""

    def __init__(self, what, reason):
        super(LibvirtFailed, self).__init__("%s failed: %s" % (what, reason))
