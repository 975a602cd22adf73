# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Thin adapter over libvirt-python.

Everything the collection asks of libvirt goes through here, so VIR_* constants and libvirt's
error codes are mapped in one place and the rest of the core sees small Python objects and
typed errors (see _errors.py).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time
import traceback

from ansible_collections.nova.snapshots.plugins.module_utils.model._crash import crash_point
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import (
    ConnectionFailed,
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


class Hypervisor(object):
    """One libvirt connection, opened on first use."""

    def __init__(self, uri):
        self.uri = uri
        self._conn = None

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
            return Domain(self, self.conn.lookupByName(name))
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise DomainNotFound(name, self.uri)
            raise LibvirtFailed("looking up domain '%s'" % name, e.get_error_message())

    def domain_names(self):
        return sorted(d.name() for d in self.conn.listAllDomains())

    def qemu_owner(self):
        """(uid, gid) libvirt gives QEMU processes by default (its DAC base label), or None."""
        from ansible_collections.nova.snapshots.plugins.module_utils.adapters._snapshot_xml import parse_xml
        caps = parse_xml(self.conn.getCapabilities())
        for model in caps.findall('host/secmodel'):
            if model.findtext('model') == 'dac':
                for label in model.findall('baselabel'):
                    if label.get('type') in ('qemu', 'kvm') and ':' in (label.text or ''):
                        uid, gid = label.text.split(':', 1)
                        return int(uid.lstrip('+')), int(gid.lstrip('+'))
        return None

    def define(self, xml):
        try:
            self.conn.defineXML(xml)
        except libvirt.libvirtError as e:
            raise LibvirtFailed('defining the domain', e.get_error_message())

    def save_image_xml(self, path):
        try:
            return self.conn.saveImageGetXMLDesc(path, 0)
        except libvirt.libvirtError as e:
            raise LibvirtFailed("reading the domain XML in memory file %s" % path, e.get_error_message())

    def restore(self, path, xml, paused=False):
        flags = libvirt.VIR_DOMAIN_SAVE_PAUSED if paused else libvirt.VIR_DOMAIN_SAVE_RUNNING
        try:
            self.conn.restoreFlags(path, xml, flags)
        except libvirt.libvirtError as e:
            raise LibvirtFailed("restoring RAM from %s" % path, e.get_error_message())

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class Domain(object):
    """A libvirt domain; results come back as strings and lists, never raw libvirt objects."""

    def __init__(self, hypervisor, dom):
        self.hypervisor = hypervisor
        self._dom = dom
        self.name = dom.name()

    @property
    def state(self):
        return _DOMAIN_STATES.get(self._dom.state()[0], 'nostate')

    def xml(self, inactive=False):
        return self._dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0)

    def snapshot_xmls(self):
        """[(name, xml)] for every snapshot libvirt knows, in libvirt's order."""
        return [(s.getName(), s.getXMLDesc(0)) for s in self._dom.listAllSnapshots(0)]

    def current_snapshot_name(self):
        try:
            if not self._dom.hasCurrentSnapshot(0):
                return None
            return self._dom.snapshotCurrent(0).getName()
        except libvirt.libvirtError as e:
            raise LibvirtFailed("reading the current snapshot of '%s'" % self.name, e.get_error_message())

    def snapshot_xml(self, name):
        try:
            return self._dom.snapshotLookupByName(name, 0).getXMLDesc(0)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                raise SnapshotNotFound(self.name, name)
            raise LibvirtFailed("reading snapshot '%s' of '%s'" % (name, self.name), e.get_error_message())

    # -- life cycle ---------------------------------------------------------------------------
    @property
    def is_active(self):
        return bool(self._dom.isActive())

    def _call(self, what, fn, *args):
        try:
            return fn(*args)
        except libvirt.libvirtError as e:
            raise LibvirtFailed("%s of domain '%s'" % (what, self.name), e.get_error_message())

    def destroy(self):
        if self.is_active:
            self._call('stopping', self._dom.destroy)

    def start(self, paused=False):
        self._call('starting', self._dom.createWithFlags, libvirt.VIR_DOMAIN_START_PAUSED if paused else 0)

    def save(self, path):
        """Stop the VM, keeping its RAM and device state in `path` (what `virsh save` does)."""
        self._call('saving the RAM', self._dom.save, path)

    def suspend(self):
        self._call('pausing', self._dom.suspend)

    def agent_ping(self, timeout=5):
        """None when the guest agent answers, else libvirt's reason."""
        import libvirt_qemu
        try:
            libvirt_qemu.qemuAgentCommand(self._dom, '{"execute": "guest-ping"}', timeout, 0)
            return None
        except libvirt.libvirtError as e:
            return e.get_error_message()

    # -- snapshots ----------------------------------------------------------------------------
    def create_snapshot(self, xml, disk_only=False, quiesce=False, live=False):
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
        if disk_only:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
        if quiesce:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE
        if live:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_LIVE
        snap = self._call('creating a snapshot', self._dom.snapshotCreateXML, xml, flags)
        return snap.getXMLDesc(0)

    def redefine_snapshot(self, xml, current=False):
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
        if current:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
        self._call('redefining snapshot metadata', self._dom.snapshotCreateXML, xml, flags)

    def _snapshot(self, name):
        try:
            return self._dom.snapshotLookupByName(name, 0)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                raise SnapshotNotFound(self.name, name)
            raise LibvirtFailed("reading snapshot '%s' of '%s'" % (name, self.name), e.get_error_message())

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

    # -- block jobs (bounded waits) -----------------------------------------------------------
    def block_job(self, disk):
        """The block job running on `disk` ({type, cur, end, ...}) or None."""
        return self._call('reading block job of %s' % disk, self._dom.blockJobInfo, disk, 0) or None

    def settle_block_job(self, disk, timeout):
        self._settle_block_job(disk, timeout)

    def _settle_block_job(self, disk, timeout):
        """A job a killed run left behind: let a pull or commit finish; drop an active commit that
        waits for its pivot (the chain it would change is still whole, so the next job starts clean)."""
        info = self._call('reading block job of %s' % disk, self._dom.blockJobInfo, disk, 0)
        if not info:
            return
        if info.get('type') == libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_ACTIVE_COMMIT:
            self._call('cancelling a left-over commit on %s' % disk, self._dom.blockJobAbort, disk, 0)
        self._wait_block_job(disk, timeout, 'left-over block job')

    def block_pull(self, disk, base, timeout):
        """Copy everything above `base` (None: the whole chain) into the active image of `disk`."""
        self._settle_block_job(disk, timeout)
        self._call('starting a block pull on %s' % disk, self._dom.blockRebase, disk, base, 0, 0)
        self._wait_block_job(disk, timeout, 'block pull')

    def block_commit(self, disk, top, base, timeout):
        """Merge image `top` (not the active one) down into `base`; the chain then skips `top`."""
        self._settle_block_job(disk, timeout)
        self._call('starting a block commit on %s' % disk, self._dom.blockCommit, disk, base, top, 0, 0)
        self._wait_block_job(disk, timeout, 'block commit')

    def block_commit_active(self, disk, base, timeout):
        """Merge the active image of `disk` (and what lies above `base`) into `base`, then pivot the
        VM onto `base`: the active image is no longer used afterwards."""
        self._settle_block_job(disk, timeout)
        self._call('starting an active block commit on %s' % disk, self._dom.blockCommit, disk, base, None, 0,
                   libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE)
        self._wait_block_job(disk, timeout, 'active block commit', until_ready=True)
        crash_point('active-commit-ready')
        self._call('pivoting %s onto %s' % (disk, base), self._dom.blockJobAbort, disk,
                   libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
        self._wait_block_job(disk, timeout, 'pivot')

    def _wait_block_job(self, disk, timeout, what, until_ready=False):
        deadline = time.time() + timeout
        while True:
            info = self._call('reading block job of %s' % disk, self._dom.blockJobInfo, disk, 0)
            if not info:
                return
            if until_ready and info.get('end') and info.get('cur') == info.get('end'):
                return      # an active commit waits in the ready state for its pivot
            if time.time() > deadline:
                try:
                    self._dom.blockJobAbort(disk, 0)
                except libvirt.libvirtError:
                    pass  # the job may have just finished; the timeout is reported either way
                raise LibvirtFailed('%s on %s of %s' % (what, disk, self.name),
                                    'did not finish within %ss (at %s of %s bytes); aborted'
                                    % (timeout, info.get('cur'), info.get('end')))
            time.sleep(0.05)
