# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu-img on LUKS chains (adapters/_keyed_images.py): the json: spec gives every encrypted layer the
key secret and no other layer one; the key is read by qemu-img from the file, never on a command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._keyed_images import (
    SECRET_ID,
    KeyedQemuImg,
    chain_spec,
    secret_object,
)
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import ImageInfo, QemuImg, QemuImgFailed, plain_filename
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._luks import CALIBRATION_ATTEMPTS, CALIBRATION_FAILED, write_key_slot

KEY = b'unit-test passphrase 91c2\n'
LUKS = {'type': 'qcow2', 'data': {'encrypt': {'format': 'luks'}}}


def info(filename, fmt, backing=None, encrypted=False):
    data = {'filename': filename, 'format': fmt, 'virtual-size': 1 << 24}
    if backing:
        data['full-backing-filename'] = backing
    if encrypted:
        data['encrypted'] = True
        data['format-specific'] = LUKS
    return ImageInfo(data)


def test_chain_spec_keys_exactly_the_encrypted_layers():
    infos = [info('/s/top.qcow2', 'qcow2', '/s/mid.qcow2', True), info('/s/mid.qcow2', 'qcow2', '/b/base.qcow2', True),
             info('/b/base.qcow2', 'qcow2', '/b/root.raw'), info('/b/root.raw', 'raw')]
    spec = chain_spec('/s/top.qcow2', infos)
    layers = []
    node = spec
    while node:
        layers.append(node)
        node = node.get('backing')
    assert [n['file']['filename'] for n in layers] == ['/s/top.qcow2', '/s/mid.qcow2', '/b/base.qcow2', '/b/root.raw']
    assert [n['driver'] for n in layers] == ['qcow2', 'qcow2', 'qcow2', 'raw']
    assert [n.get('encrypt') for n in layers] == [{'format': 'luks', 'key-secret': SECRET_ID}] * 2 + [None, None]
    alone = chain_spec('/s/top.qcow2', infos, backing=False)
    assert alone['backing'] is None and alone['encrypt']['key-secret'] == SECRET_ID


def test_chain_spec_refuses_a_chain_cut_short():
    with pytest.raises(QemuImgFailed):
        chain_spec('/s/top.qcow2', [info('/s/top.qcow2', 'qcow2', '/s/gone.qcow2', True)])


def test_secret_object_names_the_file_not_the_key(tmp_path):
    path = tmp_path / 'a,b.key'
    path.write_bytes(KEY)
    arg = secret_object(str(path))
    assert arg == 'secret,id=%s,file=%s' % (SECRET_ID, str(path).replace(',', ',,'))
    assert KEY.strip().decode() not in arg


def run_command(cmd, environ_update=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **(environ_update or {})), check=False)
    return p.returncode, p.stdout, p.stderr


def luks_overlay(qemu_img, key, path, backing, backing_fmt):
    args = ['create', '-q', '-u', '-f', 'qcow2', '--object', secret_object(key), '-o',
            'encrypt.format=luks,encrypt.key-secret=%s,encrypt.iter-time=10' % SECRET_ID,
            '-F', backing_fmt, '-b', backing, path, str(1 << 24)]
    return write_key_slot(lambda: qemu_img.run(*args), path)


@pytest.mark.skipif(shutil.which('qemu-img') is None, reason='needs qemu-img')
def test_real_qemu_img_opens_a_two_layer_luks_chain_with_the_key_file(tmp_path):
    seen = []

    def recording(cmd, environ_update=None):
        seen.append(' '.join(cmd))
        return run_command(cmd, environ_update)

    qemu_img = QemuImg(recording)
    key, wrong = str(tmp_path / 'k'), str(tmp_path / 'w')
    for path, data in ((key, KEY), (wrong, b'not it\n')):
        with open(path, 'wb') as f:
            f.write(data)
        os.chmod(path, 0o600)
    base, l1, l2 = (str(tmp_path / n) for n in ('base.raw', 'l1.qcow2', 'l2.qcow2'))
    with open(base, 'wb') as f:
        f.truncate(1 << 24)
    luks_overlay(qemu_img, key, l1, base, 'raw')
    shutil.copy(l1, l2)         # a second LUKS layer without paying QEMU's PBKDF2 calibration again
    KeyedQemuImg(qemu_img, key).run('rebase', '-q', '-u', '--image-opts',
                                    'driver=qcow2,file.filename=%s,encrypt.key-secret=%s' % (l2, SECRET_ID),
                                    '-F', 'qcow2', '-b', l1)
    with pytest.raises(QemuImgFailed) as e:      # what the collection had to refuse before
        qemu_img.check(l2)
    assert 'key-secret' in e.value.msg

    keyed = KeyedQemuImg(qemu_img, key, iter_time=10)
    report = keyed.check(l2)
    assert report.get('check-errors', 0) == 0 and not report.get('corruptions')
    assert sum(e.length for e in keyed.map(l2)) == 1 << 24
    assert keyed.map(l2, backing=False)[0].depth == 0
    assert keyed.compare(keyed.spec(l2), keyed.spec(l1))
    copy = str(tmp_path / 'copy.qcow2')
    keyed.convert(keyed.spec(l2), copy, encrypt=True)
    assert json.loads(subprocess.check_output(['qemu-img', 'info', '--output=json', copy]))['encrypted'] is True
    assert keyed.compare(keyed.spec(copy, 'qcow2'), keyed.spec(l2))

    with pytest.raises(QemuImgFailed) as e:
        KeyedQemuImg(qemu_img, wrong).map(l2)
    assert 'does not open the LUKS layers' in e.value.msg and wrong in e.value.msg
    with pytest.raises(QemuImgFailed) as e:
        KeyedQemuImg(qemu_img, wrong).check(l2)
    assert 'does not open the LUKS layers' in e.value.msg
    assert not [c for c in seen if KEY.strip().decode() in c]      # the key is never on a command line


def test_verify_reports_a_layer_the_checked_key_cannot_unlock_as_corrupt():
    """The key was checked against the domain's verifier before: 'cannot unlock' then means a damaged
    LUKS header, a finding about the image (not the task's error)."""
    from types import SimpleNamespace
    from ansible_collections.nova.snapshots.plugins.module_utils.adapters._keyed_images import WrongKey
    from ansible_collections.nova.snapshots.plugins.module_utils.model._verify_report import SnapshotReport
    from ansible_collections.nova.snapshots.plugins.module_utils.operations._verify import Verifier

    class Keyed(object):
        def check(self, path, fmt):
            raise WrongKey('key_file /k does not open the LUKS layers (wrong key): Invalid password, cannot unlock '
                           'any keyslot')

    v = Verifier(SimpleNamespace(qemu_img=None), keyed=Keyed())
    r = SnapshotReport('web', 'id1', 's2')
    v._qemu_check(r, '/s/layer.qcow2')
    assert [(p.kind, p.file) for p in r.problems] == [('corrupt_image', '/s/layer.qcow2')]
    assert 'damaged LUKS header' in r.problems[0].message


def test_a_failed_pbkdf2_calibration_is_tried_again_and_other_failures_are_not(tmp_path):
    dest = tmp_path / 'new.qcow2'
    calls = []

    def flaky(failures, msg=CALIBRATION_FAILED):
        def run():
            calls.append(1)
            dest.write_bytes(b'half')              # what a failed attempt may leave
            if len(calls) <= failures:
                raise QemuImgFailed('qemu-img: %s: %s' % (dest, msg))
            return 'ok'
        return run

    assert write_key_slot(flaky(3), str(dest)) == 'ok' and len(calls) == 4
    del calls[:]
    with pytest.raises(QemuImgFailed, match='No space left'):
        write_key_slot(flaky(1, 'No space left on device'), str(dest))
    assert len(calls) == 1
    del calls[:]
    dest.unlink()
    with pytest.raises(QemuImgFailed, match='accurate CPU usage'):
        write_key_slot(flaky(CALIBRATION_ATTEMPTS), str(dest))
    assert len(calls) == CALIBRATION_ATTEMPTS


def _pattern(keyed, path, offset, byte, write=False):
    """qemu-io writes (or checks) 64 KiB of `byte` at `offset` of the disk `path` shows, opened with the key."""
    cmd = ['qemu-io', '--object', secret_object(keyed.key_file)] + ([] if write else ['-r', '-U'])
    out = subprocess.run(cmd + ['-c', '%s -P %d %d 64k' % ('write' if write else 'read', byte, offset), keyed.name(path)],
                         capture_output=True, text=True, check=True).stdout
    return 'Pattern verification failed' not in out


@pytest.fixture
def luks_chain(tmp_path):
    """base.raw <- l1 <- l2 <- l3, each qcow2 layer LUKS with one key; l1 holds 0x11 at 0, l2 0x22 at
    64 KiB, l3 0x33 at 128 KiB."""
    qemu_img = QemuImg(run_command)
    key = str(tmp_path / 'k')
    with open(key, 'wb') as f:
        f.write(KEY)
    os.chmod(key, 0o600)
    base = str(tmp_path / 'base.raw')
    with open(base, 'wb') as f:
        f.truncate(1 << 24)
    keyed = KeyedQemuImg(qemu_img, key)
    layers = [str(tmp_path / ('l%d.qcow2' % i)) for i in (1, 2, 3)]
    luks_overlay(qemu_img, key, layers[0], base, 'raw')
    for below, path in zip(layers, layers[1:]):
        shutil.copy(layers[0], path)        # before l1 has data: an empty LUKS layer, no new key slot
        keyed.rebase(path, below, 'qcow2' if below != base else 'raw', unsafe=True)
    for i, path in enumerate(layers):
        _pattern(keyed, path, i << 16, 0x11 * (i + 1), write=True)
    return keyed, base, layers


@pytest.mark.skipif(shutil.which('qemu-img') is None, reason='needs qemu-img')
def test_keyed_rebase_commit_and_rewrite_keep_what_the_chain_shows(luks_chain, tmp_path):
    keyed, base, (l1, l2, l3) = luks_chain
    assert keyed.qemu_img.info(l3).backing_file == l2
    # a safe rebase onto an encrypted image: l3 takes in l2's data; its header names l1 by its path
    keyed.rebase(l3, l1, 'qcow2')
    assert keyed.qemu_img.info(l3).backing_file == l1 and keyed.qemu_img.info(l3).backing_format == 'qcow2'
    assert all(_pattern(keyed, l3, i << 16, 0x11 * (i + 1)) for i in range(3))
    assert keyed.measure_layer(l3) > 2 * 65536

    # a commit through an image between: l1 shows what l2 showed (l2 is back on l1 beneath... l3's old place)
    keyed.commit(l2, l1)
    assert _pattern(keyed, l1, 1 << 16, 0x22) and _pattern(keyed, l1, 0, 0x11)
    with pytest.raises(QemuImgFailed):
        keyed.commit(l1, l3)            # not below it

    # rewriting a layer: a new LUKS image on the same backing, proven equal
    dest = str(tmp_path / 'rewritten.qcow2')
    keyed.rewrite_layer(l3, dest, l1, 'qcow2')
    new = json.loads(subprocess.check_output(['qemu-img', 'info', '-U', '--output=json', dest]))
    assert new['encrypted'] is True and new['full-backing-filename'] == l1
    assert keyed.compare(dest, l3)
    assert oct(os.stat(dest).st_mode & 0o777) == '0o600'
    with pytest.raises(QemuImgFailed):
        keyed.rewrite_layer(l3, dest + '2', l1, 'qcow2', compression='zstd')
    keyed.repair_leaks(dest)
    assert keyed.info(l3).backing_file == l1          # what needs no key is the plain runner's
    # a header-only rebase of an image whose backing is gone (a moved file found again)
    os.rename(l1, l1 + '.moved')
    keyed.rebase(dest, l1 + '.moved', 'qcow2', unsafe=True)
    assert keyed.qemu_img.info(dest).backing_file == l1 + '.moved' and _pattern(keyed, dest, 0, 0x11)


class Killed(Exception):
    """The task killed between two qemu-img calls (what SIGKILL does to a module run)."""


@pytest.mark.skipif(shutil.which('qemu-img') is None, reason='needs qemu-img')
def test_a_rebase_killed_between_its_two_calls_is_read_right_and_finished_by_the_next_write(luks_chain, tmp_path):
    keyed, base, (l1, l2, l3) = luks_chain
    calls = []

    def killed_after_the_first_rebase(cmd, environ_update=None):
        if cmd[1] == 'rebase' and any(c[1] == 'rebase' for c in calls):
            raise Killed(' '.join(cmd))
        calls.append(cmd)
        return run_command(cmd, environ_update)

    dying = KeyedQemuImg(QemuImg(killed_after_the_first_rebase), keyed.key_file)
    with pytest.raises(Killed):
        dying.rebase(l3, l1, 'qcow2')
    header = json.loads(subprocess.check_output(['qemu-img', 'info', '-U', '--output=json', l3]))['full-backing-filename']
    assert header.startswith('json:') and SECRET_ID in header      # what the killed run left

    # read without the key (check mode, info modules): the chain is the one the json: name opens
    plain = QemuImg(run_command)
    assert [i.filename for i in plain.chain(l3)] == [l3, l1, base]
    assert plain.info(l3).backing_file == l1 and plain.info(l3).header_backing == header
    # read with it: the data is all there, nothing is written by reading
    fresh = KeyedQemuImg(plain, keyed.key_file)
    assert all(_pattern(fresh, l3, i << 16, 0x11 * (i + 1)) for i in range(3))
    assert plain.info(l3).header_backing == header and fresh.unsettled
    # the next write through a keyed runner first puts the plain path in the header
    fresh.repair_leaks(l3)
    assert plain.info(l3).header_backing == l1 and not fresh.unsettled
    assert all(_pattern(fresh, l3, i << 16, 0x11 * (i + 1)) for i in range(3))


def test_only_json_names_of_our_own_making_are_read_as_their_path():
    ours = 'json:' + json.dumps({'driver': 'qcow2', 'encrypt': {'format': 'luks', 'key-secret': SECRET_ID},
                                 'file': {'driver': 'file', 'filename': '/s/l1.qcow2'},
                                 'backing': {'driver': 'raw', 'file': {'driver': 'file', 'filename': '/s/base.raw'}}})
    flat = 'json:{"encrypt.key-secret": "%s", "driver": "qcow2", "file": {"driver": "file", "filename": "/s/l1.qcow2"}}' % SECRET_ID
    assert plain_filename(ours) == plain_filename(flat) == '/s/l1.qcow2'
    not_ours = [
        'json:{"driver": "qcow2", "file": {"driver": "file", "filename": "/s/l1.qcow2"}}',         # no secret of ours
        'json:{"driver": "raw", "offset": 0, "size": 4096, "key-secret": "%s", '
        '"file": {"driver": "file", "filename": "/s/l1.qcow2"}}' % SECRET_ID,                       # a byte window
        'json:{"driver": "qcow2", "key-secret": "%s", "file": {"driver": "nbd", "host": "h"}}' % SECRET_ID,
        'json:{"driver": "qcow2", "key-secret": "%s", "file": {"filename": "rel.qcow2"}}' % SECRET_ID,
        'json:[1, "%s"]' % SECRET_ID, 'json:{not json %s' % SECRET_ID, '/s/l1.qcow2', None,
    ]
    assert [plain_filename(n) for n in not_ours] == not_ours
