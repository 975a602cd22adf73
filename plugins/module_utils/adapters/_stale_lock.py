# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Clearing a domain's lock whose holder is gone (`nova unlock web-server --force`).

The lock is a flock on `<store>/.lock`, and the file names its holder while it is held
({operation, pid, host, since, boot_id}, written by Store.lock). The kernel drops a flock when its
holder dies, so after a `kill -9` the lock itself is free and only the record names a holder
that is gone: clearing that record is what is left to do. A flock still held although the recorded
holder is gone (its descriptor inherited by a process that outlived it) is broken by putting a
fresh lock file in place of the old one; the processes that still have the old one open are named.

A holder is gone when it ran on this host and its pid no longer exists (or is a zombie), or when it
ran before this host's last boot (another boot_id). A live holder, or one on another host that
cannot be checked from here, is never cleared: the refusal names it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import os
import socket

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import replace_file
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._store import boot_id, describe_holder
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Conflict


class LockHeld(Conflict):
    """force_unlock refused: the lock's holder is alive (or cannot be checked from here)."""


def pid_alive(pid):
    """Whether process `pid` runs on this host (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError) as e:
        if getattr(e, 'errno', None) == errno.EPERM:
            return True
        return False
    try:
        with open('/proc/%d/stat' % int(pid)) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (IOError, OSError, IndexError):
        return True


def holder_gone(holder, host=None, boot=None):
    """(gone, why) for a lock record; gone is None when it cannot be told from this host."""
    host = host or socket.gethostname()
    boot = boot if boot is not None else boot_id()
    if holder.get('host') and holder['host'] != host:
        return None, 'it runs on host %s, not on %s: check (and unlock) it there' % (holder['host'], host)
    if holder.get('boot_id') and boot and holder['boot_id'] != boot:
        return True, 'it ran before this host was rebooted (boot_id %s, now %s)' % (holder['boot_id'], boot)
    if holder.get('pid') is None:
        return None, 'the lock file names no pid'
    if pid_alive(holder['pid']):
        return False, 'pid %s is alive' % holder['pid']
    return True, 'pid %s no longer exists on this host' % holder['pid']


def openers(path):
    """[{pid, command}] of the live processes that have the file `path` open."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        fd_dir = '/proc/%s/fd' % entry
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                s = os.stat(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino):
                try:
                    with open('/proc/%s/cmdline' % entry, 'rb') as f:
                        cmd = f.read().replace(b'\0', b' ').decode('utf-8', 'replace').strip()
                except (IOError, OSError):
                    cmd = None
                found.append(dict(pid=int(entry), command=cmd))
                break
    return found


def _try_lock(path):
    """A descriptor of `path` holding its flock, or None when another process holds it."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (IOError, OSError) as e:
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def _clear_record(fd, holder, report, check_mode):
    """The flock is ours (`fd`): its holder is gone, only its record may be left; clear that."""
    if not holder:
        return dict(changed=False, lock=report)
    gone, why = holder_gone(holder)
    report.update(holder=holder, state='stale',
                  reason='the lock was already released (its holder died: %s); only the record of %s was left'
                  % (why, describe_holder(holder).lstrip(': ')))
    if gone is False:
        # a free flock but a live pid: the pid was reused by another process after the holder died
        report['reason'] = 'the lock was already released; the recorded pid %s belongs to another process now' % holder.get('pid')
    if not check_mode:
        os.ftruncate(fd, 0)
        os.fsync(fd)
    return dict(changed=True, lock=report)


def force_unlock(store, check_mode):
    """Clear the domain's lock when its holder is gone; refuse (LockHeld) when it is alive.

    Returns {changed, lock: {path, state, holder, reason, still_open_by}} where state is
    `unlocked` (nothing to clear), `stale` (the holder is gone, the kernel had released its flock:
    the record is cleared) or `broken` (the holder is gone but its flock was still held: the lock
    file is replaced)."""
    path = store.lock_path
    report = dict(path=path, state='unlocked', holder=None, reason='the domain is not locked', still_open_by=[])
    if not os.path.exists(path):
        return dict(changed=False, lock=report)
    fd = _try_lock(path)
    try:
        holder = store.lock_holder()
        if fd is not None:
            return _clear_record(fd, holder, report, check_mode)
    finally:
        if fd is not None:
            os.close(fd)     # releases the flock
    report['holder'] = holder
    gone, why = holder_gone(holder or {})
    if not gone:
        raise LockHeld("the lock of domain '%s' (%s) is held%s and was not cleared: %s"
                       % (store.vm_name, path, describe_holder(holder) or ' by an unknown process', why),
                       domain=store.vm_name, holder=holder, lock=dict(report, state='held', reason=why))
    report.update(state='broken', still_open_by=openers(path),
                  reason='its holder is gone (%s) but the lock was still held by a process that inherited it; '
                         'a new lock file replaced it' % why)
    if not check_mode:
        replace_file(path, b'')     # a new inode: the next operation locks that one
    return dict(changed=True, lock=report)
