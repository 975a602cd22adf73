# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bundle layout, manifests, OVF envelopes, save-image headers and the qemu-img steps of export/import.

The qemu-img steps run the real qemu-img on scratch images (no hypervisor is involved)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import tarfile

import pytest
from lxml import etree

from ansible_collections.nova.snapshots.plugins.module_utils.adapters import _ovf, _save_image
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._archive import Source, write_tar
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._image_copy import ImageCopy, spec_of
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._import_xml import retarget
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import QemuImg
from ansible_collections.nova.snapshots.plugins.module_utils.model import _bundle as layout
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NovaError


def run_command(cmd, environ_update=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **(environ_update or {})), check=False)
    return p.returncode, p.stdout, p.stderr


# -- manifests ----------------------------------------------------------------------------------
def test_manifest_is_what_sha256sum_checks(tmp_path):
    (tmp_path / 'a.qcow2').write_bytes(b'disk')
    (tmp_path / 'domain.xml').write_text('<domain/>')
    sums = {n: hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ('a.qcow2', 'domain.xml')}
    (tmp_path / 'SHA256SUMS').write_text(layout.render_manifest(sums))
    assert subprocess.run(['sha256sum', '-c', '--strict', 'SHA256SUMS'], cwd=tmp_path, check=False).returncode == 0
    assert layout.parse_manifest((tmp_path / 'SHA256SUMS').read_text()) == sums
    (tmp_path / 'a.qcow2').write_bytes(b'Disk')
    assert subprocess.run(['sha256sum', '-c', 'SHA256SUMS'], cwd=tmp_path, capture_output=True, check=False).returncode == 1


def test_mf_is_what_sha256sum_checks(tmp_path):
    (tmp_path / 'vm.ovf').write_text('<Envelope/>')
    sums = {'vm.ovf': hashlib.sha256(b'<Envelope/>').hexdigest()}
    text = layout.render_mf(sums)
    assert text == 'SHA256(vm.ovf)= %s\n' % sums['vm.ovf']
    (tmp_path / 'vm.mf').write_text(text)
    assert subprocess.run(['sha256sum', '-c', 'vm.mf'], cwd=tmp_path, check=False).returncode == 0
    assert layout.parse_mf(text, 'x') == sums


@pytest.mark.parametrize('line', ['%s  ../etc/passwd' % ('0' * 64), '%s  /abs' % ('0' * 64), '%s  a/b' % ('0' * 64),
                                  'not a line'])
def test_manifest_refuses_paths_and_junk(line):
    with pytest.raises(NovaError):
        layout.parse_manifest(line + '\n')


def test_check_sums_names_the_file():
    with pytest.raises(NovaError, match='checksum mismatch for disk-vda.qcow2'):
        layout.check_sums({'disk-vda.qcow2': 'a' * 64}, {'disk-vda.qcow2': 'b' * 64}, 'b')
    with pytest.raises(NovaError, match='file domain.xml listed in the manifest is missing'):
        layout.check_sums({'domain.xml': 'a' * 64}, {}, 'b')
    with pytest.raises(NovaError, match='file extra.bin is not in the manifest'):
        layout.check_sums({}, {'extra.bin': 'a' * 64}, 'b')


@pytest.mark.parametrize('compat,version', [('vmware-workstation-16', 'vmx-18'), ('esxi-7', 'vmx-17'),
                                            ('esxi-8', 'vmx-20')])
def test_hardware_versions(compat, version):
    assert layout.hardware_version(compat) == version


def test_unknown_compatibility_and_format():
    with pytest.raises(NovaError, match="unknown compatibility 'esxi-5'; known: esxi-7, esxi-8, vmware-workstation-16"):
        layout.hardware_version('esxi-5')
    with pytest.raises(NovaError, match="unknown export format 'vdi'"):
        layout.check_format('vdi')


def _rec(bid, snap_id, extends=None):
    return dict(id=bid, kind='incremental' if extends else 'full', snapshot=dict(id=snap_id, name=snap_id),
                disks=[dict(device='vda')], extends=dict(snapshot_id=extends, snapshot_name=extends) if extends else None)


def test_chain_order():
    chain = [_rec('b1', 's1'), _rec('b2', 's3', 's1'), _rec('b3', 's5', 's3')]
    assert layout.order_chain(chain) == chain
    with pytest.raises(NovaError, match='does not extend'):
        layout.order_chain([chain[0], chain[2]])
    with pytest.raises(NovaError, match='must start with a full bundle'):
        layout.order_chain(chain[1:])


# -- OVF ----------------------------------------------------------------------------------------
DOMAIN = '''<domain type="kvm"><name>web</name><uuid>8d2b3c1e-0000-4000-8000-000000000001</uuid>
<memory unit="KiB">2097152</memory><vcpu>2</vcpu><os><type arch="x86_64">hvm</type></os><devices>
<disk type="file" device="disk"><driver name="qemu" type="qcow2"/><source file="/v/a.qcow2"/>
<backingStore/><target dev="vda" bus="virtio"/></disk>
<disk type="file" device="disk"><driver name="qemu" type="qcow2"/><source file="/v/b.qcow2"/><target dev="vdb" bus="virtio"/></disk>
<disk type="file" device="cdrom"><source file="/iso/x.iso"/><target dev="sda" bus="sata"/><readonly/></disk>
<interface type="network"><mac address="52:54:00:11:22:33"/><source network="default"/><model type="virtio"/></interface>
</devices></domain>'''


def test_ovf_maps_cpu_memory_disks_nics_and_round_trips():
    root = etree.fromstring(DOMAIN)
    facts = _ovf.domain_facts(root)
    assert facts == dict(vcpus=2, memory_mib=2048, nics=[dict(network='default', mac='52:54:00:11:22:33', model='virtio')])
    disks = [dict(file='x-vda.vmdk', size=1000, capacity=2 ** 30, device='vda')]
    text = _ovf.build('web', facts, disks, 'vmx-17', DOMAIN)
    env = etree.fromstring(text.encode())
    ns = {'ovf': _ovf.OVF, 'rasd': _ovf.RASD, 'vssd': _ovf.VSSD}
    assert env.findtext('ovf:VirtualSystem/ovf:VirtualHardwareSection/ovf:System/vssd:VirtualSystemType',
                        namespaces=ns) == 'vmx-17'
    items = env.findall('ovf:VirtualSystem/ovf:VirtualHardwareSection/ovf:Item', ns)
    types = [int(i.findtext('rasd:ResourceType', namespaces=ns)) for i in items]
    assert types == [3, 4, 6, 17, 10]
    for item in items:       # RASD children in schema (alphabetical) order
        names = [etree.QName(c).localname for c in item]
        assert names == sorted(names)
    nic = items[-1]
    assert nic.findtext('rasd:ResourceSubType', namespaces=ns) == 'VmxNet3'
    assert nic.findtext('rasd:Connection', namespaces=ns) == 'default'
    disk = env.find('ovf:DiskSection/ovf:Disk', ns)
    assert disk.get('{%s}format' % _ovf.OVF) == _ovf.STREAM_OPTIMIZED
    back = _ovf.parse(text, 'x')
    assert back['vcpus'] == 2 and back['memory_mib'] == 2048
    assert back['disks'] == [dict(file='x-vda.vmdk', capacity=2 ** 30)]
    assert etree.fromstring(back['domain']).findtext('name') == 'web'


def test_retarget_repoints_disks_and_drops_the_empty_backing_store():
    root = etree.fromstring(DOMAIN)
    retarget(root, 'copy', None, {'vda': '/new/copy-vda.qcow2'}, network='br0', network_kind='bridge')
    assert root.findtext('name') == 'copy' and root.find('uuid') is None
    disks = root.findall('devices/disk')
    assert [d.get('device') for d in disks] == ['disk', 'cdrom']          # vdb was not imported
    assert disks[0].find('source').get('file') == '/new/copy-vda.qcow2'
    assert disks[0].find('backingStore') is None                          # empty one means "no backing"
    iface = root.find('devices/interface')
    assert iface.get('type') == 'bridge' and iface.find('source').get('bridge') == 'br0'
    assert iface.find('mac') is None


# -- save image header --------------------------------------------------------------------------
def _save_file(path, xml, cookie=b'<cookie/>', pad=4096):
    data = xml.encode() + b'\0' + cookie + b'\0'
    header = _save_image.MAGIC + struct.pack('<5I', 2, len(data) + pad, 1, 0, len(xml) + 1) + b'\0' * 56
    path.write_bytes(header + data + b'\0' * pad + b'QEMU-STATE')


def test_save_image_xml_rewritten_in_place(tmp_path):
    f = tmp_path / 'm.save'
    _save_file(f, '<domain><name>old</name></domain>')
    assert _save_image.read_xml(str(f)) == '<domain><name>old</name></domain>'
    _save_image.write_xml(str(f), '<domain><name>a-much-longer-name</name></domain>')
    assert _save_image.read_xml(str(f)) == '<domain><name>a-much-longer-name</name></domain>'
    raw = f.read_bytes()
    assert raw.endswith(b'QEMU-STATE') and len(raw) == 92 + len('<domain><name>old</name></domain>') + 1 + 10 + 4096 + 10
    assert b'<cookie/>' in raw
    with pytest.raises(NovaError, match='does not fit'):
        _save_image.write_xml(str(f), '<domain>%s</domain>' % ('x' * 8000))


# -- archives and qemu-img steps ----------------------------------------------------------------
def _img(path, size='8M'):
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', str(path), size], check=True)


def _write(path, offset, data, fmt='qcow2'):
    subprocess.run(['qemu-io', '-f', fmt, '-c', 'write -P %d %d %d' % (data, offset, 65536), str(path)],
                   check=True, capture_output=True)


def test_incremental_layer_holds_only_what_differs(tmp_path):
    q = ImageCopy(QemuImg(run_command))
    base = tmp_path / 'base.qcow2'
    _img(base)
    _write(base, 0, 1)
    mid = tmp_path / 'mid.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', str(base), str(mid)], check=True)
    _write(mid, 65536 * 4, 2)
    _write(mid, 0, 1)                     # rewritten with the same bytes: not a difference
    top = tmp_path / 'top.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', str(mid), str(top)], check=True)
    _write(top, 65536 * 9, 3)
    inc = tmp_path / 'inc.qcow2'
    q.diff_layer(str(top), 'qcow2', str(base), 'qcow2', str(inc))
    assert q.own_bytes(str(inc)) == 2 * 65536
    q.set_backing_name(str(inc), 'disk-vda.qcow2')
    assert q.info(str(inc), 'qcow2')['backing-filename'] == 'disk-vda.qcow2'
    # base + inc shows exactly top
    stacked = {'driver': 'qcow2', 'file': {'driver': 'file', 'filename': str(inc)}, 'backing': spec_of(base, 'qcow2')}
    assert q.same(stacked, spec_of(top, 'qcow2'))
    assert not q.same(spec_of(base, 'qcow2'), spec_of(top, 'qcow2'))


def test_tar_members_open_in_place(tmp_path):
    q = ImageCopy(QemuImg(run_command))
    stage = tmp_path / 'stage'
    stage.mkdir()
    _img(stage / 'disk-vda.qcow2')
    _write(stage / 'disk-vda.qcow2', 65536, 7)
    copy = tmp_path / 'orig.qcow2'
    subprocess.run(['cp', str(stage / 'disk-vda.qcow2'), str(copy)], check=True)
    (stage / 'bundle.json').write_text(json.dumps({'x': 1}))
    write_tar(str(tmp_path / 'b.tar'), str(stage), ['bundle.json', 'disk-vda.qcow2'])
    assert os.listdir(stage) == []
    src = Source(str(tmp_path / 'b.tar'))
    assert src.order == ['bundle.json', 'disk-vda.qcow2']
    assert src.sha256('disk-vda.qcow2') == hashlib.sha256(copy.read_bytes()).hexdigest()
    spec = {'driver': 'qcow2', 'file': src.file_spec('disk-vda.qcow2')}
    assert q.same(spec, spec_of(copy, 'qcow2'))
    with tarfile.open(str(tmp_path / 'b.tar')) as t:
        assert t.getmembers()[0].name == 'bundle.json'
    # truncated archive: named as such
    data = (tmp_path / 'b.tar').read_bytes()
    (tmp_path / 'cut.tar').write_bytes(data[:len(data) // 2])
    with pytest.raises(NovaError, match='truncated|not a readable'):
        Source(str(tmp_path / 'cut.tar'))
