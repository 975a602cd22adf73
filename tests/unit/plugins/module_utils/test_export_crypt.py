# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an export of an encrypted snapshot may write (operations/_encryption.export_crypt): encrypted by
default with the same key, in clear only with decrypt: true, refused where encryption cannot be kept."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._keyed_images import KeyedQemuImg
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import ImageInfo
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused
from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import export_crypt


def manager(tmp_path, luks):
    def chain(path, fmt=None):
        data = {'filename': path, 'format': 'qcow2'}
        if luks:
            data.update(encrypted=True, **{'format-specific': {'type': 'qcow2', 'data': {'encrypt': {'format': 'luks'}}}})
        return [ImageInfo(data)]
    return SimpleNamespace(qemu_img=SimpleNamespace(chain=chain), store=SimpleNamespace(root=str(tmp_path)),
                           domain=SimpleNamespace(uuid='8c1c6b8e-7a41-4b4e-9b7e-2f0b6d1f1a11', name='web'))


def snap():
    return SimpleNamespace(name='s2', has_overlays=True, memory_file=None,
                           disk_files=[SimpleNamespace(device='vda', file_path='/s/l1.qcow2', format='qcow2')])


@pytest.fixture
def key(tmp_path):
    path = tmp_path / 'k'
    path.write_bytes(b'unit key\n')
    os.chmod(path, 0o400)
    return str(path)


def test_encrypted_snapshot_is_exported_encrypted_unless_decrypt(tmp_path, key):
    keyed, encrypted = export_crypt(manager(tmp_path, True), snap(), 'bundle', key_file=key)
    assert isinstance(keyed, KeyedQemuImg) and encrypted is True
    assert export_crypt(manager(tmp_path, True), snap(), 'bundle', key_file=key, decrypt=True)[1] is False
    assert export_crypt(manager(tmp_path, False), snap(), 'bundle', key_file=key, encrypt=True)[1] is True
    assert export_crypt(manager(tmp_path, False), snap(), 'qcow2') == (None, False)


@pytest.mark.parametrize('args, words', [
    (dict(fmt='bundle'), 'needs key_file'),
    (dict(fmt='ova', key_file=True), 'format bundle only'),
    (dict(fmt='bundle', key_file=True, compress=True), 'compress'),
    (dict(fmt='bundle', key_file=True, incremental=True), 'incremental'),
    (dict(fmt='bundle', key_file=True, encrypt=True, decrypt=True), 'exclude each other'),
])
def test_refused_before_anything_is_written(tmp_path, key, args, words):
    if args.get('key_file'):
        args['key_file'] = key
    fmt = args.pop('fmt')
    with pytest.raises(Refused) as e:
        export_crypt(manager(tmp_path, True), snap(), fmt, **args)
    assert words in e.value.msg
    assert os.listdir(str(tmp_path)) == ['k']        # no key verifier written


def test_decrypt_of_a_clear_snapshot_is_an_error(tmp_path, key):
    with pytest.raises(Refused) as e:
        export_crypt(manager(tmp_path, False), snap(), 'bundle', key_file=key, decrypt=True)
    assert 'not encrypted' in e.value.msg
