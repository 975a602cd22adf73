# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Key files (who may read them) and the disk XML of LUKS chains."""

from __future__ import annotations

import os

import pytest
from lxml import etree

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._domain_xml import DomainXML
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._keyfile import key_verifier, read_key_file
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._luks import describe_chain, disk_encrypted, drop_encryption
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import ImageInfo
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._secrets import secret_uuid
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NotFound, Refused


def key_file(tmp_path, mode, data=b'k3y\n'):
    path = tmp_path / 'snap.key'
    path.write_bytes(data)
    os.chmod(path, mode)
    return str(path)


@pytest.mark.parametrize('mode', [0o400, 0o600])
def test_root_only_key_file_is_read_as_is(tmp_path, mode):
    assert read_key_file(key_file(tmp_path, mode)) == b'k3y\n'     # the newline is part of the key


@pytest.mark.parametrize('mode', [0o640, 0o604, 0o644, 0o660, 0o602])
def test_key_file_others_can_reach_is_refused_naming_file_and_mode(tmp_path, mode):
    path = key_file(tmp_path, mode)
    with pytest.raises(Refused) as e:
        read_key_file(path)
    assert path in e.value.msg and '%04o' % mode in e.value.msg and 'k3y' not in e.value.msg


def test_missing_empty_and_directory_key_files_are_refused(tmp_path):
    with pytest.raises(NotFound):
        read_key_file(str(tmp_path / 'none'))
    with pytest.raises(Refused, match='empty'):
        read_key_file(key_file(tmp_path, 0o600, b'\n'))
    os.chmod(tmp_path, 0o700)
    with pytest.raises(Refused, match='not a regular file'):
        read_key_file(str(tmp_path))


def test_verifier_tells_keys_apart_and_is_not_the_key():
    salt = b's' * 16
    assert key_verifier(b'a', salt) == key_verifier(b'a', salt) != key_verifier(b'b', salt)
    assert len(key_verifier(b'a', salt)) == 64


def test_secret_uuid_is_per_domain_and_stable():
    assert secret_uuid('u1') == secret_uuid('u1') != secret_uuid('u2')


def _info(path, fmt, encrypted):
    data = {'filename': path, 'format': fmt}
    if encrypted:
        data['format-specific'] = {'type': 'qcow2', 'data': {'encrypt': {'format': 'luks'}}}
    return ImageInfo(data)


def test_describe_chain_names_every_layer_and_its_encryption():
    dom = DomainXML("<domain><name>vm</name><devices><disk type='file' device='disk'><driver type='qcow2'/>"
                    "<source file='/old.qcow2'/><backingStore/><target dev='vda'/></disk></devices></domain>")
    disk = dom.disk('vda')
    disk.point_at('/s/top.qcow2')
    describe_chain(disk, [_info('/s/top.qcow2', 'qcow2', True), _info('/s/mid.qcow2', 'qcow2', True),
                          _info('/base.raw', 'raw', False)], 'uuid-1')
    root = etree.fromstring(dom.to_string())
    d = root.find('devices/disk')
    assert disk_encrypted(disk)
    assert d.find('source/encryption').attrib == {'format': 'luks', 'engine': 'qemu'}
    assert d.find('source/encryption/secret').attrib == {'type': 'passphrase', 'uuid': 'uuid-1'}
    mid = d.find('backingStore')
    assert mid.find('source').get('file') == '/s/mid.qcow2' and mid.find('format').get('type') == 'qcow2'
    assert mid.find('source/encryption/secret').get('uuid') == 'uuid-1'
    base = mid.find('backingStore')
    assert base.find('source').get('file') == '/base.raw' and base.find('source/encryption') is None
    end = base.find('backingStore')
    assert end is not None and len(end) == 0          # the end of the chain
    assert len(d.findall('backingStore')) == 1


def test_a_disk_pointed_back_at_a_clear_image_loses_its_encryption():
    """A revert to a snapshot from before encryption: QEMU refuses LUKS options on a clear image."""
    dom = DomainXML("<domain><name>vm</name><devices><disk type='file' device='disk'><driver type='qcow2'/>"
                    "<source file='/s/luks.qcow2'><encryption format='luks' engine='qemu'><secret type='passphrase' "
                    "uuid='u'/></encryption></source><target dev='vda'/></disk></devices></domain>")
    disk = dom.disk('vda')
    disk.point_at('/s/clear.qcow2')
    assert disk_encrypted(disk)               # point_at alone keeps it
    drop_encryption(disk)
    assert not disk_encrypted(disk) and disk.source_file == '/s/clear.qcow2'


@pytest.mark.parametrize('value', [9, 0, -1, 60001])
def test_luks_iter_time_outside_its_range_is_refused_naming_it(value):
    from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import check_iter_time
    with pytest.raises(Refused) as e:
        check_iter_time(value)
    assert 'luks_iter_time' in e.value.msg and str(value) in e.value.msg


def test_the_domain_keeps_the_luks_cost_its_first_encrypted_task_gave(tmp_path):
    """A task without luks_iter_time writes layers at the domain's recorded cost; one that gives it
    writes at its own, and the record follows (write_verifier and Crypt.iter_time, no hypervisor)."""
    from types import SimpleNamespace
    from ansible_collections.nova.snapshots.plugins.module_utils.adapters._store import Store
    from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import Crypt, write_verifier
    store = Store(str(tmp_path / 'store'), 'vm')
    m = SimpleNamespace(store=store, domain=SimpleNamespace(uuid='2b8c8f36-2d4c-4b53-9d0b-0b1c9d2e3f40', name='vm'))
    key = key_file(tmp_path, 0o400)
    assert Crypt(m, key).iter_time == 1000                     # nothing recorded: the collection's default
    write_verifier(store, read_key_file(key), 'u', 100)
    assert Crypt(m, key).iter_time == 100                      # recorded by the first encrypted snapshot
    assert Crypt(m, key, 250).iter_time == 250                 # given: this task's layers
    assert Crypt(m, key).keyed(None).iter_time == 100          # the qemu-img runner of later chain operations
