# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._domain_xml import DomainXML
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import QemuImg, QemuImgFailed


class Recorder:
    """Stands in for AnsibleModule.run_command: records each command, answers from a table."""

    def __init__(self, answers=None):
        self.calls = []
        self.answers = answers or {}

    def __call__(self, cmd, environ_update=None):
        self.calls.append((cmd, environ_update))
        return self.answers.get(cmd[1], (0, '', ''))


def test_every_call_is_explicit_about_formats_and_locale():
    run = Recorder()
    q = QemuImg(run)
    q.create_overlay('/s/o.qcow2', '/b/base.img', 'raw')
    q.rebase('/s/o.qcow2', '/b/base.img', 'raw')
    q.rebase('/s/o.qcow2', None, None)
    assert [c[0] for c in run.calls] == [
        ['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', '/b/base.img', '/s/o.qcow2'],
        ['qemu-img', 'rebase', '-q', '-f', 'qcow2', '-F', 'raw', '-b', '/b/base.img', '/s/o.qcow2'],
        ['qemu-img', 'rebase', '-q', '-f', 'qcow2', '-b', '', '/s/o.qcow2'],
    ]
    assert all(env == {'LC_ALL': 'C'} for _cmd, env in run.calls)


def test_relative_backing_paths_are_refused():
    with pytest.raises(QemuImgFailed):
        QemuImg(Recorder()).create_overlay('/s/o.qcow2', 'base.img', 'raw')


def test_info_reads_json_with_force_share():
    answer = json.dumps({'filename': '/s/o.qcow2', 'format': 'qcow2', 'virtual-size': 1, 'actual-size': 2,
                         'full-backing-filename': '/b/base.img', 'backing-filename-format': 'raw',
                         'snapshots': [{'name': 'int1'}]})
    run = Recorder({'info': (0, answer, '')})
    info = QemuImg(run).info('/s/o.qcow2')
    assert run.calls[0][0] == ['qemu-img', 'info', '--output=json', '-U', '/s/o.qcow2']
    assert (info.backing_file, info.backing_format, info.snapshots) == ('/b/base.img', 'raw', ['int1'])


def test_failure_names_the_command():
    run = Recorder({'commit': (1, '', 'Could not open')})
    with pytest.raises(QemuImgFailed) as e:
        QemuImg(run).run('commit', '/x')
    assert e.value.msg == 'qemu-img commit /x failed (rc=1): Could not open'


DOMAIN = """<domain type='qemu'><name>web</name><memory unit='KiB'>196608</memory>
<devices>
 <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/b/vda.qcow2'/>
   <backingStore/><target dev='vda' bus='virtio'/></disk>
 <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='sda'/><readonly/></disk>
 <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/b/vdb.img'/><target dev='vdb'/><shareable/></disk>
 <future-device/>
</devices></domain>"""


def test_point_at_drops_the_empty_backing_store_and_keeps_the_rest():
    dom = DomainXML(DOMAIN)
    assert [d.target for d in dom.disks if d.writable] == ['vda']
    assert dom.memory_bytes == 196608 * 1024
    dom.disk('vda').point_at('/s/active.qcow2')
    again = DomainXML(dom.to_string())
    vda = again.disk('vda')
    assert vda.source_file == '/s/active.qcow2' and vda.driver_type == 'qcow2'
    # an empty <backingStore/> would tell libvirt the overlay has no backing file
    assert vda.root.find('backingStore') is None
    assert again.root.find('devices/future-device') is not None


def test_backing_file_from_a_running_domains_xml():
    dom = DomainXML(DOMAIN.replace("<backingStore/>", "<backingStore type='file'><format type='qcow2'/>"
                                   "<source file='/b/base.qcow2'/><backingStore/></backingStore>"))
    assert dom.disk('vda').backing_file == '/b/base.qcow2'
    assert DomainXML(DOMAIN).disk('vda').backing_file == ''        # an empty element: no backing file
    assert DomainXML(DOMAIN).disk('vdb').backing_file is None      # not shown: ask qemu-img
