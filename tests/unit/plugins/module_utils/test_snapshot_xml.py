# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._snapshot_xml import SnapshotXML

LIBVIRT_XML = """<domainsnapshot>
  <name>app-v1.0</name>
  <description>before the update</description>
  <state>running</state>
  <parent><name>security-updates</name></parent>
  <creationTime>1700000000</creationTime>
  <memory snapshot='external' file='/var/lib/nova/snapshots/web/snapshots/1/memory.save'/>
  <disks>
    <disk name='vda' snapshot='external' type='file'>
      <driver type='qcow2'/>
      <source file='/var/lib/nova/snapshots/web/snapshots/1/disk_vda.qcow2'/>
    </disk>
    <disk name='vdb' snapshot='no'/>
  </disks>
  <domain type='qemu'><name>web</name><devices><future-device foo='bar'/></devices></domain>
  <cookie><cpu mode='custom'/></cookie>
</domainsnapshot>"""


def test_reads_every_field():
    snap = SnapshotXML(LIBVIRT_XML)
    assert snap.name == 'app-v1.0'
    assert snap.description == 'before the update'
    assert snap.state == 'running'
    assert snap.parent == 'security-updates'
    assert snap.creation_time == 1700000000
    assert snap.memory_mode == 'external'
    assert snap.memory_file.endswith('/memory.save')
    assert [(d.name, d.snapshot, d.driver_type) for d in snap.disks] == [('vda', 'external', 'qcow2'), ('vdb', 'no', None)]
    assert snap.disks[0].source_file.endswith('disk_vda.qcow2')
    assert snap.domain.find('name').text == 'web'


def test_edits_in_place_and_keeps_unknown_elements():
    snap = SnapshotXML(LIBVIRT_XML)
    snap.description = 'renamed <&> "quoted"'
    snap.parent = None
    snap.disks[1].snapshot = 'internal'
    again = SnapshotXML(snap.to_string())
    assert again.description == 'renamed <&> "quoted"'
    assert again.parent is None
    assert again.disks[1].snapshot == 'internal'
    assert again.root.find('domain/devices/future-device').get('foo') == 'bar'
    assert again.root.find('cookie/cpu').get('mode') == 'custom'


def test_builds_from_nothing_with_names_never_formatted_into_xml():
    snap = SnapshotXML()
    snap.name = "a</name><evil/>"
    snap.parent = 'base'
    snap.memory_mode = 'no'
    text = snap.to_string()
    assert '<evil/>' not in text
    assert SnapshotXML(text).name == "a</name><evil/>"
    assert SnapshotXML(text).parent == 'base'


@pytest.mark.parametrize('state,memory,disk_modes,expected', [
    ('running', 'internal', ['internal'], 'internal'),
    ('shutoff', 'no', ['internal', 'internal'], 'internal'),
    ('running', 'external', ['external'], 'memory'),
    ('disk-snapshot', 'no', ['external', 'no'], 'disk_only'),
    ('shutoff', 'no', ['external'], 'disk_only'),
])
def test_snapshot_type_from_libvirt_xml(state, memory, disk_modes, expected):
    snap = SnapshotXML()
    snap.state = state
    snap.memory_mode = memory
    disks = snap.root.makeelement('disks')
    snap.root.append(disks)
    for i, mode in enumerate(disk_modes):
        disks.append(disks.makeelement('disk', name='vd' + 'ab'[i], snapshot=mode))
    assert snap.snapshot_type == expected


def test_refuses_entities():
    evil = '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><domainsnapshot><name>&e;</name></domainsnapshot>'
    snap = SnapshotXML(evil)
    assert 'root:' not in (snap.name or '')
