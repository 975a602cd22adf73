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
