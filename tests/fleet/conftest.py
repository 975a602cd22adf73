# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the fleet tests: three simulated hypervisors for the session, guests on them."""

from __future__ import annotations

import os
import sys

import libvirt
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleetbed  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope='session')
def hosts():
    """hv1, hv2, hv3 up (fleet.sh up 3) for the session, all removed at its end (fleet.sh down),
    unless NOVA_FLEET_KEEP=1."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    fleetbed.fleet('up', 3)
    made = [fleetbed.Host('hv%d' % i) for i in (1, 2, 3)]
    yield made
    for h in made:
        h.close()
    if os.environ.get('NOVA_FLEET_KEEP') != '1':
        fleetbed.fleet('down')


@pytest.fixture
def fleet_up(hosts):
    """Every host's libvirtd running at the start and end of the test (a test may stop one)."""
    fleetbed.fleet('up', 3)
    yield hosts
    fleetbed.fleet('up', 3)
    for h in hosts:
        h.close()


@pytest.fixture
def make_fleet_guest(fleet_up):
    """make_fleet_guest(host, disks=1, running=False) -> FleetGuest; all removed afterwards."""
    made = []

    def make(host, disks=1, running=False, **kw):
        guest = fleetbed.FleetGuest(host, disks=disks, **kw)
        made.append(guest)
        if running:
            guest.start()
        return guest

    yield make
    for guest in made:
        guest.cleanup()


@pytest.fixture
def inventory(tmp_path, fleet_up):
    """write(group_vars=None, host_vars=None, hosts=None) -> the inventory path for the fleet."""
    def write(group_vars=None, host_vars=None, hosts=None):
        return fleetbed.write_inventory(str(tmp_path / 'inventory'), hosts or fleet_up, group_vars, host_vars)
    return write
