# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pivot of an active commit (adapters/_libvirt.py BlockDevice): libvirt refuses it until it has
handled QEMU's READY event, which comes a moment after the job shows everything copied."""

from __future__ import annotations

import libvirt
import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._libvirt import BlockDevice
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import LibvirtFailed


class Refusal(libvirt.libvirtError):
    """What libvirt raises; built without a connection's last error."""

    def __init__(self, code, msg):
        super(Refusal, self).__init__(msg)      # libvirt's own: without a last error it keeps msg
        self.code, self.msg = code, msg

    def get_error_code(self):
        return self.code

    def get_error_message(self):
        return self.msg

    def get_error_domain(self):
        return libvirt.VIR_FROM_QEMU


class Domain(object):
    """A domain whose active commit is all copied; libvirt refuses `refusals` pivots first."""

    def __init__(self, refusals, code=libvirt.VIR_ERR_BLOCK_COPY_ACTIVE):
        self.refusals, self.code, self.pivots, self.pivoted, self.started = refusals, code, 0, False, False

    def blockCommit(self, disk, base, top, bandwidth, flags):
        assert flags & libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE
        self.started = True

    def blockJobInfo(self, disk, flags):
        if self.pivoted or not self.started:
            return {}
        return {'type': libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_ACTIVE_COMMIT, 'cur': 100, 'end': 100}

    def blockJobAbort(self, disk, flags):
        assert flags == libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT
        self.pivots += 1
        if self.pivots <= self.refusals:
            raise Refusal(self.code, "block copy still active: disk '%s' not ready for pivot yet" % disk)
        self.pivoted = True


def commit(dom, timeout=30):
    BlockDevice(dom, 'web', 'vda', timeout).commit_active('/s/base.qcow2')


def test_a_pivot_refused_until_libvirt_saw_ready_is_asked_again():
    dom = Domain(refusals=3)
    commit(dom)
    assert dom.pivoted and dom.pivots == 4


def test_other_pivot_errors_fail_at_once_naming_the_disk_and_domain():
    dom = Domain(refusals=1, code=libvirt.VIR_ERR_OPERATION_FAILED)
    with pytest.raises(LibvirtFailed) as e:
        commit(dom)
    assert dom.pivots == 1
    assert "pivoting onto /s/base.qcow2 on vda of domain 'web' failed" in e.value.msg


def test_a_pivot_never_accepted_fails_at_the_jobs_deadline():
    dom = Domain(refusals=10 ** 6)
    with pytest.raises(LibvirtFailed) as e:
        commit(dom, timeout=0.3)
    assert 'not ready for pivot yet' in e.value.msg and dom.pivots > 1
