# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Thin, closed adapter over libvirt-python.

Everything the collection asks of libvirt goes through here. VIR_* constants and libvirt's error
codes are mapped in one place (`_call`), so the rest of the core sees small Python objects and
typed errors (model/_errors.py) and no libvirt exception ever reaches a user as a traceback:
a domain undefined while a task runs becomes DomainGone naming it, anything else LibvirtFailed
naming the step. Block jobs are handled per disk by BlockDevice, with bounded waits.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time
import traceback

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._trace import libvirt_call
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._xml import parse_xml
from ansible_collections.nova.snapshots.plugins.module_utils.model._crash import ACTIVE_COMMIT_READY, crash_point
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import (
    ConnectionFailed,
    ConnectionLost,
    DomainGone,
    DomainNotFound,
    LibvirtFailed,
    SnapshotNotFound,
)

try:
    import libvirt
except ImportError:
    HAS_LIBVIRT = False
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_LIBVIRT = True
    LIBVIRT_IMPORT_ERROR = None
    # libvirt-python prints every error to stderr by default; we report them ourselves.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


# libvirt's virDomainState values, named as `virsh domstate` names them.
_DOMAIN_STATES = {
    0: 'nostate', 1: 'running', 2: 'blocked', 3: 'paused',
    4: 'shutdown', 5: 'shutoff', 6: 'crashed', 7: 'pmsuspended',
}
QEMU_LOG_DIR = '/var/log/libvirt/qemu'
POLL = 0.05


def qemu_log_tail(domain, lines=5):
    """The last lines of QEMU's log for `domain`: what libvirt means by "the cause is unknown"."""
    try:
        with open(os.path.join(QEMU_LOG_DIR, '%s.log' % domain), 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode('utf-8', 'replace')
    except (IOError, OSError):
        return None
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return ' / '.join(tail) or None


def _call(what, fn, *args, **kwargs):
    """fn(*args), with libvirt's errors turned into ours. `domain` (a name) says whose call it is."""
    domain = kwargs.pop('domain', None)
    try:
        with libvirt_call(what, getattr(fn, '__name__', 'call')):     # timings and the operation log
            return fn(*args)
    except libvirt.libvirtError as e:
        code = e.get_error_code()
        if domain and code == libvirt.VIR_ERR_NO_DOMAIN:
            raise DomainGone(domain, what)
        if domain and code == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT and kwargs.get('snapshot'):
            raise SnapshotNotFound(domain, kwargs['snapshot'])
        reason = e.get_error_message() or 'no reason given'
        if e.get_error_domain() == libvirt.VIR_FROM_RPC:
            raise ConnectionLost("%s of domain '%s'" % (what, domain) if domain else what, reason)
        if domain and 'cause is unknown' in reason:
            tail = qemu_log_tail(domain)
            if tail:
                reason += ' (QEMU log %s/%s.log ends: %s)' % (QEMU_LOG_DIR, domain, tail)
        raise LibvirtFailed("%s of domain '%s'" % (what, domain) if domain else what, reason)


class Hypervisor(object):
    """One libvirt connection, opened on first use."""

    def __init__(self, uri):
        self.uri = uri
        self._conn = None
        self.generation = 0     # how many times the connection was lost and reopened

    def call(self, what, fn, *args, **kwargs):
        """_call, and when libvirtd went away, a new connection for the calls that follow."""
        try:
            return _call(what, fn, *args, **kwargs)
        except ConnectionLost:
            self.reopen()
            raise

    @property
    def conn(self):
        if self._conn is None:
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as e:
                raise ConnectionFailed(self.uri, e.get_error_message())
        return self._conn

    def domain(self, name):
        try:
            return Domain(self, self.conn.lookupByName(name), name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise DomainNotFound(name, self.uri)
            raise LibvirtFailed("looking up domain '%s'" % name, e.get_error_message())

    def domain_names(self):
        return sorted(self.call('listing domains', lambda: [d.name() for d in self.conn.listAllDomains()]))

    def qemu_owner(self):
        """(uid, gid) libvirt gives QEMU processes by default (its DAC base label), or None."""
        caps = parse_xml(self.call('reading the host capabilities', self.conn.getCapabilities))
        for model in caps.findall('host/secmodel'):
            if model.findtext('model') == 'dac':
                for label in model.findall('baselabel'):
                    if label.get('type') in ('qemu', 'kvm') and ':' in (label.text or ''):
                        uid, gid = label.text.split(':', 1)
                        return int(uid.lstrip('+')), int(gid.lstrip('+'))
        return None

    def define(self, xml):
        self.call('defining the domain', self.conn.defineXML, xml)

    def volume_path(self, pool, volume):
        """The path of storage volume `volume` in pool `pool` (what a <disk type='volume'> uses)."""
        try:
            return self.conn.storagePoolLookupByName(pool).storageVolLookupByName(volume).path()
        except libvirt.libvirtError as e:
            raise LibvirtFailed("finding volume '%s' of storage pool '%s'" % (volume, pool), e.get_error_message())

    def save_image_xml(self, path):
        return self.call('reading the domain XML in memory file %s' % path, self.conn.saveImageGetXMLDesc, path, 0)

    def restore(self, path, xml, paused=False):
        flags = libvirt.VIR_DOMAIN_SAVE_PAUSED if paused else libvirt.VIR_DOMAIN_SAVE_RUNNING
        domain = parse_xml(xml).findtext('name')
        self.call('restoring RAM from %s' % path, self.conn.restoreFlags, path, xml, flags, domain=domain)

    def reopen(self):
        """After the connection was lost: the next call opens a new one (libvirtd may be back)."""
        self.close()
        self.generation += 1

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass  # the daemon went away; there is nothing left to close
            finally:
                self._conn = None


class Domain(object):
    """A libvirt domain; results come back as strings and lists, never raw libvirt objects."""

    def __init__(self, hypervisor, dom, name):
        self.hypervisor = hypervisor
        self._handle = dom
        self._generation = hypervisor.generation
        self.name = name

    @property
    def _dom(self):
        """The libvirt handle, looked up again on the new connection after a lost one, so that
        what undoes a failed step can still reach libvirtd once it is back."""
        if self._generation != self.hypervisor.generation:
            self._handle = self._call('looking the domain up again', lambda: self.hypervisor.conn.lookupByName(self.name))
            self._generation = self.hypervisor.generation
        return self._handle

    def _call(self, what, fn, *args, **kwargs):
        return self.hypervisor.call(what, fn, *args, domain=self.name, **kwargs)

    @property
    def state(self):
        return _DOMAIN_STATES.get(self._call('reading the state', self._dom.state)[0], 'nostate')

    @property
    def is_active(self):
        return bool(self._call('reading the state', self._dom.isActive))

    @property
    def is_persistent(self):
        """False for a transient domain (started with `virsh create`): stopping it makes it vanish."""
        return bool(self._call('reading whether it is defined', self._dom.isPersistent))

    @property
    def uuid(self):
        return self._call('reading the UUID', self._dom.UUIDString)

    def xml(self, inactive=False):
        return self._call('reading the definition', self._dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0)

    # -- life cycle ---------------------------------------------------------------------------
    def destroy(self):
        if self.is_active:
            self._call('stopping', self._dom.destroy)

    def start(self, paused=False):
        self._call('starting', self._dom.createWithFlags, libvirt.VIR_DOMAIN_START_PAUSED if paused else 0)

    def save(self, path):
        """Stop the VM, keeping its RAM and device state in `path` (what `virsh save` does)."""
        self._call('saving the RAM', self._dom.save, path)

    def agent_ping(self, timeout=5):
        """None when the guest agent answers, else libvirt's reason."""
        import libvirt_qemu
        try:
            libvirt_qemu.qemuAgentCommand(self._dom, '{"execute": "guest-ping"}', timeout, 0)
            return None
        except libvirt.libvirtError as e:
            return e.get_error_message()

    # -- snapshots ----------------------------------------------------------------------------
    def snapshot_xmls(self):
        """[(name, xml)] for every snapshot libvirt knows, in libvirt's order."""
        return self._call('listing snapshots', lambda: [(s.getName(), s.getXMLDesc(0)) for s in self._dom.listAllSnapshots(0)])

    def snapshot_names(self):
        """The name of every snapshot libvirt knows: one call, where snapshot_xmls makes one per snapshot
        (0.5 ms each, paid twice by every task on a domain with hundreds of them)."""
        return self._call('listing snapshots', lambda: [s.getName() for s in self._dom.listAllSnapshots(0)])

    def current_snapshot_name(self):
        def current():
            return self._dom.snapshotCurrent(0).getName() if self._dom.hasCurrentSnapshot(0) else None
        return self._call('reading the current snapshot', current)

    def _snapshot(self, name):
        return self._call("reading snapshot '%s'" % name, self._dom.snapshotLookupByName, name, 0, snapshot=name)

    def snapshot_xml(self, name):
        return self._call("reading snapshot '%s'" % name, self._snapshot(name).getXMLDesc, 0)

    def create_snapshot(self, xml, disk_only=False, quiesce=False, live=False, reuse_external=False):
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
        if reuse_external:      # overlays made beforehand (encrypted ones, operations/_encryption.py)
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT
        if disk_only:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
        if quiesce:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE
        if live:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_LIVE
        return self._call('creating a snapshot', lambda: self._dom.snapshotCreateXML(xml, flags).getXMLDesc(0))

    def redefine_snapshot(self, xml, current=False):
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
        if current:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
        self._call('redefining snapshot metadata', self._dom.snapshotCreateXML, xml, flags)

    def delete_snapshot(self, name, children=False, metadata_only=False, missing_ok=False):
        flags = 0
        if children:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN
        if metadata_only:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY
        try:
            snap = self._snapshot(name)
        except SnapshotNotFound:
            if missing_ok:
                return
            raise
        self._call("deleting snapshot '%s'" % name, snap.delete, flags)

    def revert_internal(self, name, after=None):
        flags = {None: 0, 'running': libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING,
                 'paused': libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED}[after]
        self._call("reverting to snapshot '%s'" % name, self._dom.revertToSnapshot, self._snapshot(name), flags)

    # -- block jobs ----------------------------------------------------------------------------
    def block(self, disk, timeout, bandwidth=None):
        """The block-job handle of one disk (target name such as 'vda'); waits bounded by `timeout`;
        `bandwidth` (bytes/s) limits the copying of its jobs."""
        return BlockDevice(self._dom, self.name, disk, timeout, bandwidth)


class BlockJob(object):
    """What blockJobInfo reports, as an object."""

    def __init__(self, info):
        self.type = info.get('type')
        self.cur = info.get('cur')
        self.end = info.get('end')

    @property
    def is_active_commit(self):
        return self.type == libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_ACTIVE_COMMIT

    @property
    def ready(self):
        """All copied: an active commit then waits for its pivot."""
        return bool(self.end) and self.cur == self.end


class PendingJob(object):
    """A block job started on one disk; finish() waits for it (and pivots an active commit).

    Starting the jobs of several disks first and finishing them afterwards runs them concurrently."""

    def __init__(self, disk, finish):
        self.disk = disk
        self.finish = finish


class BlockDevice(object):
    """One disk of a running domain, for block jobs (in the manner of Nova's BlockDevice)."""

    def __init__(self, dom, domain_name, disk, timeout, bandwidth=None):
        self._dom = dom
        self.domain_name = domain_name
        self.disk = disk
        self.timeout = timeout
        self.bandwidth = int(bandwidth) if bandwidth else 0     # bytes/s; 0: as fast as it goes

    def _call(self, what, fn, *args):
        return _call('%s on %s' % (what, self.disk), fn, *args, domain=self.domain_name)

    def job(self):
        """The job running on this disk (BlockJob) or None."""
        info = self._call('reading the block job', self._dom.blockJobInfo, self.disk, 0)
        return BlockJob(info) if info else None

    def settle(self):
        """A job a killed run left behind: let a pull or commit finish; drop an active commit that
        waits for its pivot (the chain it would change is still whole, so the next job starts clean)."""
        job = self.job()
        if job is None:
            return
        if job.is_active_commit:
            self._call('cancelling a left-over commit', self._dom.blockJobAbort, self.disk, 0)
        self._wait('left-over block job')

    def start_pull(self, base):
        """Start copying everything above `base` (None: the whole chain) into the active image."""
        self.settle()
        flags = libvirt.VIR_DOMAIN_BLOCK_REBASE_BANDWIDTH_BYTES if self.bandwidth else 0
        self._call('starting a block pull', self._dom.blockRebase, self.disk, base, self.bandwidth, flags)
        started = time.time()
        return PendingJob(self.disk, lambda: self._wait('block pull', started=started))

    def start_commit(self, top, base):
        """Start merging image `top` (not the active one) down into `base`; the chain then skips `top`."""
        self.settle()
        flags = libvirt.VIR_DOMAIN_BLOCK_COMMIT_BANDWIDTH_BYTES if self.bandwidth else 0
        self._call('starting a block commit', self._dom.blockCommit, self.disk, base, top, self.bandwidth, flags)
        started = time.time()
        return PendingJob(self.disk, lambda: self._wait('block commit', started=started))

    def start_commit_active(self, base):
        """Start merging the active image (and what lies above `base`) into `base`; finish() pivots onto
        `base`, so the active image is no longer used afterwards."""
        self.settle()
        flags = libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE
        if self.bandwidth:
            flags |= libvirt.VIR_DOMAIN_BLOCK_COMMIT_BANDWIDTH_BYTES
        self._call('starting an active block commit', self._dom.blockCommit, self.disk, base, None, self.bandwidth, flags)
        started = time.time()
        return PendingJob(self.disk, lambda: self._pivot(base, started))

    def _pivot(self, base, started):
        self._wait('active block commit', until_ready=True, started=started)
        crash_point(ACTIVE_COMMIT_READY)
        deadline = started + self.timeout

        # The job shows all copied (cur == end) a moment before libvirt has handled QEMU's READY event,
        # and until then libvirt refuses the pivot ("not ready for pivot yet"): a window that a busy
        # host or a libvirtd just restarted widens to seconds. Asked again until the job's deadline.
        def pivot():
            try:
                self._dom.blockJobAbort(self.disk, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
                return True
            except libvirt.libvirtError as e:
                if e.get_error_code() == libvirt.VIR_ERR_BLOCK_COPY_ACTIVE and time.time() < deadline:
                    return False
                raise
        while not self._call('pivoting onto %s' % base, pivot):
            time.sleep(POLL)
        self._wait('pivot')

    def pull(self, base):
        self.start_pull(base).finish()

    def commit(self, top, base):
        self.start_commit(top, base).finish()

    def commit_active(self, base):
        self.start_commit_active(base).finish()

    def _wait(self, what, until_ready=False, started=None):
        deadline = (started or time.time()) + self.timeout     # from the job's start, also when several run
        while True:
            job = self.job()
            if job is None or (until_ready and job.ready):
                return
            if time.time() > deadline:
                try:
                    self._dom.blockJobAbort(self.disk, 0)
                except libvirt.libvirtError:
                    pass  # the job may have just finished; the timeout is reported either way
                raise LibvirtFailed('%s on %s of %s' % (what, self.disk, self.domain_name),
                                    'did not finish within %ss (at %s of %s bytes); aborted'
                                    % (self.timeout, job.cur, job.end))
            time.sleep(POLL)
