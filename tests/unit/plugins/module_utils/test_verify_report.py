# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure part of verification: checksum verdicts, statuses, the summary, the Prometheus textfile;
and the file adapter (digests, throttle, save headers, sparse copies) on real temporary files."""

from __future__ import annotations

import hashlib
import os
import re
import struct

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.adapters import _checksum
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NovaError
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import VmSnapshot
from ansible_collections.nova.snapshots.plugins.module_utils.model._tree import Tree
from ansible_collections.nova.snapshots.plugins.module_utils.model._verify_report import (
    SnapshotReport,
    checksum_verdict,
    failure_message,
    longest_chain,
    matches,
    render_metrics,
    status_of,
    summarize,
)

REC = dict(size=10, algorithm='sha256', digest='aa', backing='/b')
NOW = dict(size=10, mtime=1)


@pytest.mark.parametrize('recorded,facts,digests,backing,verdict', [
    (REC, NOW, {'sha256': 'aa'}, '/b', 'match'),
    (REC, NOW, {'sha256': 'bb'}, '/b', 'mismatch'),
    (REC, dict(size=9, mtime=1), {'sha256': 'aa'}, '/b', 'size_mismatch'),
    (REC, None, None, '/b', 'missing'),
    (None, NOW, {'sha256': 'aa'}, '/b', 'first'),
    (REC, NOW, {'sha256': 'bb'}, '/c', 'rebased'),
    # recorded with sha256, this run uses blake3: checked with sha256 in the same read
    (REC, NOW, {'blake3': 'cc', 'sha256': 'aa'}, '/b', 'match'),
    (REC, NOW, {'blake3': 'cc', 'sha256': 'ab'}, '/b', 'mismatch'),
    # recorded with blake3, which this run cannot compute
    (dict(REC, algorithm='blake3'), NOW, {'sha256': 'cc'}, '/b', 'algorithm_changed'),
])
def test_checksum_verdicts(recorded, facts, digests, backing, verdict):
    assert checksum_verdict(recorded, facts, digests, backing)[0] == verdict


def test_mismatch_note_names_both_digests():
    _v, note = checksum_verdict(REC, NOW, {'sha256': 'bb'}, '/b')
    assert 'checksum mismatch' in note and 'aa' in note and 'bb' in note


@pytest.mark.parametrize('problems,verified,first,status', [
    ([], 2, 0, 'ok'), (['x'], 2, 0, 'failed'), ([], 2, 1, 'unverified'), ([], 0, 0, 'unverified'),
    (['x'], 0, 1, 'failed'),
])
def test_status(problems, verified, first, status):
    assert status_of(problems, verified, first) == status


def test_glob_and_exact_names():
    assert matches('nightly-1', 'nightly-*') and matches('a[1]', 'a[1]') and matches('x', None)
    assert not matches('weekly-1', 'nightly-*')


def reports():
    ok = SnapshotReport('web', 'i1', 'base')
    ok.verified_files, ok.bytes_read = 2, 100
    bad = SnapshotReport('web', 'i2', 'checkpoint')
    bad.add('checksum_mismatch', 'checksum mismatch', 'restore it', file='/s/disk_vda.qcow2')
    bad.bytes_read = 50
    new = SnapshotReport('db', 'i3', 'first')
    new.first_files = 1
    return [ok, bad, new]


def test_summary_and_failure_message_name_each_broken_snapshot():
    rs = reports()
    s = summarize(rs)
    assert (s['snapshots'], s['ok'], s['failed'], s['unverified'], s['problems'], s['bytes_read']) == (3, 1, 1, 1, 1, 150)
    assert s['failed_snapshots'] == ['web/checkpoint']
    msg = failure_message(rs)
    assert msg == "snapshot 'checkpoint' of 'web': FAILED - checksum mismatch (/s/disk_vda.qcow2)"
    assert failure_message(rs[:1]) is None
    d = rs[2].to_dict()
    assert d['status'] == 'unverified' and d['trusted_on_first_verification'] is True


def test_metrics_textfile_format():
    rs = reports()
    text = render_metrics([dict(domain='web', count=2, bytes=4096, oldest=100, newest=900, longest_chain=2),
                           dict(domain='db', count=0, bytes=0, oldest=None, newest=None, longest_chain=0)],
                          rs, 1000)
    lines = text.splitlines()
    assert text.endswith('\n')
    # node_exporter's textfile format: HELP and TYPE once per metric, before its samples
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? -?\d+(\.\d+)?$')
    for line in lines:
        assert line.startswith('# HELP ') or line.startswith('# TYPE ') or sample.match(line), line
    assert 'nova_snapshot_oldest_age_seconds{domain="web"} 900' in lines
    assert 'nova_snapshot_newest_age_seconds{domain="web"} 100' in lines
    assert not [x for x in lines if x.startswith('nova_snapshot_oldest_age_seconds{domain="db"}')]
    assert 'nova_snapshot_verify_ok{domain="web",snapshot="checkpoint"} 0' in lines
    assert 'nova_snapshot_verify_ok{domain="web",snapshot="base"} 1' in lines
    assert 'nova_snapshot_verify_ok{domain="db",snapshot="first"} -1' in lines
    assert 'nova_snapshot_verify_last_run_timestamp_seconds 1000' in lines
    names = [x.split()[2] for x in lines if x.startswith('# TYPE')]
    assert len(names) == len(set(names))


def test_metric_labels_are_escaped():
    r = SnapshotReport('web', 'i', 'a"b\\c')
    text = render_metrics([], [r], 5)
    assert 'snapshot="a\\"b\\\\c"' in text


def snap(i, parent=None):
    return VmSnapshot(i, 'web', 'n' + i, 'external', 1, 'running', [], parent_snapshot=parent)


def test_longest_chain():
    assert longest_chain(Tree('web')) == 0
    tree = Tree('web', [snap('a'), snap('b', 'a'), snap('c', 'b'), snap('d', 'a')])
    assert longest_chain(tree) == 3


# -- files ----------------------------------------------------------------------------------
def test_digest_equals_hashlib_across_block_boundaries(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / 'f'
    path.write_bytes(data)
    digest, n = _checksum.file_digest(str(path), 'sha256', block=1024 * 1024)
    assert (digest, n) == (hashlib.sha256(data).hexdigest(), len(data))


def test_several_algorithms_in_one_read(tmp_path):
    path = tmp_path / 'f'
    path.write_bytes(b'x' * 100000)
    algorithms = ['sha256', 'blake3'] if _checksum.HAS_BLAKE3 else ['sha256']
    digests, n = _checksum.file_digests(str(path), algorithms, block=4096)
    assert n == 100000 and digests['sha256'] == hashlib.sha256(b'x' * 100000).hexdigest()
    assert sorted(digests) == sorted(algorithms)


def test_blake3_digest_or_clear_error(tmp_path):
    path = tmp_path / 'f'
    path.write_bytes(b'abc')
    if _checksum.HAS_BLAKE3:
        import blake3
        assert _checksum.file_digest(str(path), 'blake3')[0] == blake3.blake3(b'abc').hexdigest()
    else:
        with pytest.raises(_checksum.MissingLibrary):
            _checksum.file_digest(str(path), 'blake3')


def test_unknown_algorithm_is_refused(tmp_path):
    with pytest.raises(NovaError, match='unknown checksum algorithm'):
        _checksum.hasher('md5')


def test_throttle_sleeps_to_keep_the_rate():
    clock = [0.0]
    slept = []
    t = _checksum.Throttle(100, clock=lambda: clock[0], sleep=slept.append)
    t.account(50)     # 0.5 s worth at 100 B/s, at t=0
    clock[0] = 0.2
    t.account(50)     # 1.0 s worth, at t=0.2
    assert slept == pytest.approx([0.5, 0.8])
    assert _checksum.Throttle(None).account(10 ** 9) is None


def save_image(path, magic, data_len=100, total=4096):
    header = struct.pack('=16s5I56x', magic, 2, data_len, 1, 0, 0)
    with open(path, 'wb') as f:
        f.write(header + b'x' * (total - len(header)))


def test_save_header(tmp_path):
    p = str(tmp_path / 'm')
    save_image(p, b'LibvirtQemudSave')
    h = _checksum.save_header(p)
    assert h['complete'] and not h['partial'] and h['min_size'] == 92 + 100 and h['version'] == 2
    save_image(p, b'LibvirtQemudPart')
    assert _checksum.save_header(p)['partial']
    with open(p, 'wb') as f:
        f.write(b'short')
    assert _checksum.save_header(p) is None


def test_checksum_file_round_trip_and_damage(tmp_path):
    cf = _checksum.ChecksumFile(str(tmp_path))
    assert cf.load() == dict(files={})
    cf.save(dict(files={'/a': dict(digest='x')}, last=dict(verified_at=1)))
    assert cf.load()['files']['/a']['digest'] == 'x'
    (tmp_path / 'checksums.json').write_text('{broken')
    assert cf.load() == dict(files={}, damaged=True)
    with pytest.raises(NovaError):
        _checksum.ChecksumFile(str(tmp_path / 'gone')).save(dict(files={}))
