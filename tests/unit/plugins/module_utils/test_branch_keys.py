# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a branch merge or switch on encrypted chains needs of the key (operations/_branch_keys.py and
TreeManager._merge_keys): decided from image headers alone, a table of cases over fake images."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from lxml import etree

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._domain_xml import DomainXML
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._keyed_images import KeyedQemuImg
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._luks import drop_encryption, encryption_element
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import ImageInfo
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import SnapshotDisk, VmSnapshot
from ansible_collections.nova.snapshots.plugins.module_utils.operations._branch_keys import BranchKeys
from ansible_collections.nova.snapshots.plugins.module_utils.operations._branches import TreeManager, _Merging


class View(object):
    """ChainView over {path: (backing, encrypted)}."""

    def __init__(self, images):
        self.images = images

    def info(self, path):
        backing, encrypted = self.images[path]
        data = {'filename': path, 'format': 'qcow2'}
        if backing:
            data['full-backing-filename'] = backing
        if encrypted:
            data['encrypted'] = True
        return ImageInfo(data)

    def chain(self, path):
        out = []
        while path:
            out.append(path)
            path = self.images[path][0]
        return out


def images(source, target, top):
    """ancestor <- target tip <- the target's top, and ancestor <- source tip; which are LUKS."""
    return {'/s/base': (None, False), '/s/anc': ('/s/base', False),
            '/s/src': ('/s/anc', source), '/s/tgt': ('/s/anc', target), '/s/top': ('/s/tgt', top)}


def snap(sid, path):
    return VmSnapshot(sid, 'web', sid, 'disk_only', 0, 'shutoff', [SnapshotDisk('vda', path, 'qcow2', None)])


class Keys(BranchKeys):
    """BranchKeys with a stand-in for the checked Crypt of a task that gave key_file."""

    def __init__(self, m, given):
        self.m = m
        self.crypt = SimpleNamespace(key_file='/k/domain.key', keyed=lambda qemu_img, **kw: KeyedQemuImg(
            qemu_img, '/k/domain.key', **kw)) if given else None


def merge_keys(source, target, top, key, fast_forward=False):
    m = SimpleNamespace(view=View(images(source, target, top)), qemu_img=object(), domain=SimpleNamespace(name='web'))
    mg = _Merging(snap('f1', '/s/src'), snap('m1', '/s/tgt'), snap('a', '/s/anc'), None, True)
    TreeManager(m)._merge_keys(mg, Keys(m, key), {'vda': '/s/top'}, 'main', fast_forward)
    return mg, m


@pytest.mark.parametrize('source, target, top, fast_forward, encrypted', [
    (True, True, True, False, {'vda'}),      # both sides encrypted: the result is LUKS
    (False, True, True, False, {'vda'}),     # the target's chain is: the result on it is LUKS too
    (False, True, True, True, set()),        # fast-forward onto the clear source: the LUKS top is kept as it is
    (True, True, True, True, {'vda'}),
])
def test_merges_touching_luks_layers_read_them_with_the_key(source, target, top, fast_forward, encrypted):
    mg, m = merge_keys(source, target, top, key=True, fast_forward=fast_forward)
    assert mg.encrypted == encrypted and isinstance(mg.qemu_img, KeyedQemuImg) and mg.tmpdir == '/dev/shm'
    with pytest.raises(Refused, match='needs key_file'):
        merge_keys(source, target, top, key=False, fast_forward=fast_forward)


def test_a_clear_merge_needs_no_key_and_reads_in_place():
    mg, m = merge_keys(False, False, False, key=False)
    assert mg.encrypted == set() and mg.crypt is None and mg.qemu_img is m.qemu_img and mg.tmpdir is None


@pytest.mark.parametrize('fast_forward', [False, True])
def test_encrypted_data_under_the_targets_clear_overlay_is_refused_saying_why(fast_forward):
    with pytest.raises(Refused) as e:
        merge_keys(True, False, False, key=True, fast_forward=fast_forward)
    assert "unencrypted overlay /s/top (its writes since snapshot 'm1')" in e.value.msg
    assert 'take an encrypted snapshot' in e.value.msg and 'nothing was changed' in e.value.msg


def test_a_clear_overlay_loses_the_encryption_an_encrypted_one_had():
    disk = DomainXML('<domain><name>web</name><devices><disk type="file" device="disk"><driver name="qemu" '
                     'type="qcow2"/><source file="/s/top"/><target dev="vda"/></disk></devices></domain>').disk('vda')
    encryption_element(disk.root.find('source'), 'u-1')
    disk.point_at('/s/clear')
    drop_encryption(disk)
    assert etree.tostring(disk.root.find('source')) == b'<source file="/s/clear"/>'
