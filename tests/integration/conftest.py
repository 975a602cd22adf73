# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for tests against the real libvirtd (started by scripts/setup.sh)."""

from __future__ import annotations

import os

import libvirt
import pytest

import testbed


@pytest.fixture(scope='session')
def conn():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    c = libvirt.open(testbed.URI)
    # Domains left by an earlier run that was killed before its clean-up (not those of a run
    # still going on in parallel: each guest's directory names the process that made it).
    for dom in c.listAllDomains():
        if dom.name().startswith(testbed.PREFIX) and not testbed.owner_alive(dom.name()):
            testbed.destroy_domain(c, dom.name())
    os.makedirs(testbed.WORK_DIR, mode=0o755, exist_ok=True)
    yield c
    c.close()


@pytest.fixture
def make_guest(conn):
    """make_guest(disks=1, running=True, agent=True) -> Guest; every guest is removed afterwards,
    snapshot metadata, overlays and store included, whether the test passed or not."""
    made = []

    def make(disks=1, running=True, agent=True, disk_mib=64):
        guest = testbed.Guest(conn, disks=disks, agent=agent, disk_mib=disk_mib)
        made.append(guest)
        if running:
            guest.start()
        return guest

    yield make
    for guest in made:
        guest.cleanup()


@pytest.fixture
def guest(make_guest):
    """A running test guest with two disks."""
    return make_guest(disks=2)


@pytest.fixture
def run_module(ansible_module):
    """run_module(module, **args) -> the module's result on this host, run in-process by pytest-ansible the
    way `ansible localhost -m module -a ...` runs it (no playbook; for read-only modules)."""
    def run(module, **args):
        return dict(getattr(ansible_module, module)(**args))['localhost']
    return run


@pytest.fixture
def keys(tmp_path):
    """(good, wrong, world-readable) key files for encrypted snapshots (tests/integration/encrypted.py)."""
    from encrypted import KEY
    good, wrong, open_ = tmp_path / 'good.key', tmp_path / 'wrong.key', tmp_path / 'open.key'
    for path, data, mode in ((good, KEY, 0o400), (wrong, b'not the key\n', 0o600), (open_, KEY, 0o644)):
        path.write_bytes(data)
        os.chmod(path, mode)
    return str(good), str(wrong), str(open_)


@pytest.fixture
def crypt_guest(make_guest, conn):
    """A running one-disk test guest whose libvirt secret (if a test made one) goes with it."""
    # imported here: this file is imported before pytest-ansible sets up the collection loader
    from ansible_collections.nova.snapshots.plugins.module_utils.adapters._secrets import secret_uuid
    guest = make_guest(disks=1)
    yield guest
    try:
        conn.secretLookupByUUIDString(secret_uuid(guest.dom.UUIDString())).undefine()
    except libvirt.libvirtError:
        pass
