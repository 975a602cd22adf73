# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit trail's pure rules (chain hashing, verification, filters), its file (rotation, concurrent
appends, syslog framing) and the trace behind `timings` and the operation log."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import stat

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.adapters import _trace as trace
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._audit_log import AuditLog, forward_to_syslog
from ansible_collections.nova.snapshots.plugins.module_utils.model._audit import (
    GENESIS,
    matches,
    normalize_time,
    record_hash,
    seal,
    verify,
)


def chain(n):
    lines, head = [], (GENESIS, 0)
    for i in range(n):
        line = seal(dict(operation='create', domain='vm%d' % (i % 2), time='2026-12-02T01:%02d:00Z' % i), *head)
        lines.append(line)
        head = (json.loads(line)['hash'], i + 1)
    return lines


def test_sealed_lines_chain_and_verify():
    lines = chain(4)
    records, broken = verify([('audit.log', lines)])
    assert broken is None
    assert [r['seq'] for r in records] == [1, 2, 3, 4]
    assert records[0]['prev'] == GENESIS
    assert all(records[i]['prev'] == records[i - 1]['hash'] for i in range(1, 4))
    assert record_hash(records[2]) == records[2]['hash']


def test_an_edited_line_is_found_by_its_own_hash():
    lines = chain(5)
    lines[2] = lines[2].replace(b'"vm0"', b'"vmX"')
    _records, broken = verify([('audit.log', lines)])
    assert (broken.line, broken.seq) == (3, 3)
    assert 'changed' in broken.reason


def test_an_edited_line_with_a_recomputed_hash_breaks_the_next_line():
    lines = chain(5)
    rec = json.loads(lines[2])
    rec['domain'] = 'vmX'
    lines[2] = seal(rec, rec['prev'], rec['seq'] - 1)      # forger recomputes this line's hash
    _records, broken = verify([('audit.log', lines)])
    assert (broken.line, broken.seq) == (4, 4)


def test_a_deleted_line_is_found_at_the_line_after_the_gap():
    lines = chain(5)
    del lines[1]
    _records, broken = verify([('audit.log', lines)])
    assert broken.line == 2 and broken.seq == 3
    assert '1 line(s) before it are missing' in broken.reason


def test_a_line_that_is_not_json_breaks_the_chain():
    lines = chain(3)
    lines.insert(1, b'hello')
    _records, broken = verify([('a', lines)])
    assert broken.line == 2 and broken.seq is None


def test_a_trail_whose_oldest_files_were_rotated_away_starts_at_its_first_line():
    lines = chain(6)
    assert verify([('audit.log.1', lines[3:5]), ('audit.log', lines[5:])])[1] is None
    _records, broken = verify([('audit.log.2', lines[:2]), ('audit.log.1', lines[3:5])])
    assert (broken.path, broken.line) == ('audit.log.1', 1)


@pytest.mark.parametrize('filters,want', [
    (dict(), [1, 2, 3, 4]),
    (dict(domain='vm0'), [1, 3]),
    (dict(domain='vm9'), [4]),
    (dict(operation='revert'), [2]),
    (dict(operation='nova_snapshot'), [1, 2, 3]),
    (dict(who='alice'), [2, 3]),
    (dict(who='42'), [3]),
    (dict(since='2026-12-02T01:30:00Z'), [3, 4]),
    (dict(until='2026-12-02T01:30:00Z'), [1, 2, 3]),
    (dict(since='2026-12-02T01:00:00Z', until='2026-12-02T01:29:59Z', domain='vm1'), [2]),
])
def test_filters(filters, want):
    records = [
        dict(seq=1, domain='vm0', operation='create', module='nova_snapshot', who=dict(user='root'), time='2026-12-02T01:00:00Z'),
        dict(seq=2, domain='vm1', operation='revert', module='nova_snapshot', who=dict(user='root', awx_user_name='alice'),
             time='2026-12-02T01:20:00Z'),
        dict(seq=3, domain='vm0', operation='delete', module='nova_snapshot', who=dict(remote_user='alice', awx_job_id='42'),
             time='2026-12-02T01:30:00Z'),
        dict(seq=4, domain=['vm8', 'vm9'], operation='enforce', module='nova_policy', who={}, time='2026-12-02T02:00:00Z'),
    ]
    assert [r['seq'] for r in records if matches(r, **filters)] == want


@pytest.mark.parametrize('text,want', [
    ('2026-12-02', '2026-12-02T00:00:00Z'), ('2026-12-02T01:30', '2026-12-02T01:30:00Z'),
    ('2026-12-02 01:30:05Z', '2026-12-02T01:30:05Z'), ('2026-12-02T01:30:05.25Z', '2026-12-02T01:30:05Z'),
    ('yesterday', None), ('2026-12-02T1:30', None),
])
def test_normalize_time(text, want):
    assert normalize_time(text) == want


def test_the_file_rotates_by_size_and_the_chain_carries_across(tmp_path):
    log = AuditLog(str(tmp_path), max_bytes=600, keep=3)
    for i in range(12):
        log.append(dict(operation='create', domain='vm', n=i, pad='x' * 100))
    files = log.files()
    assert [os.path.basename(f) for f in files] == ['audit.log.3', 'audit.log.2', 'audit.log.1', 'audit.log']
    assert all(os.path.getsize(f) <= 600 for f in files)
    records, broken = verify(log.read())
    assert broken is None
    assert records[-1]['seq'] == 12 and records[-1]['n'] == 11
    first_of_current = json.loads(open(files[-1], 'rb').readline())
    last_of_previous = json.loads(open(files[-2], 'rb').read().splitlines()[-1])
    assert first_of_current['prev'] == last_of_previous['hash']
    assert stat.S_IMODE(os.stat(files[-1]).st_mode) == 0o600


def _append_many(directory, who, n):
    log = AuditLog(directory, max_bytes=4000, keep=50)
    for i in range(n):
        log.append(dict(operation='create', domain=who, n=i))


def test_concurrent_appenders_leave_a_well_formed_verified_trail(tmp_path):
    procs = [multiprocessing.Process(target=_append_many, args=(str(tmp_path), 'vm%d' % k, 40)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    records, broken = verify(AuditLog(str(tmp_path), keep=50).read())
    assert broken is None
    assert len(records) == 120 and [r['seq'] for r in records] == list(range(1, 121))
    assert sorted(r['n'] for r in records if r['domain'] == 'vm1') == list(range(40))


def test_syslog_forwarding_frames_the_line_for_a_unix_datagram_socket(tmp_path):
    address = str(tmp_path / 'log.sock')
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    try:
        forward_to_syslog(b'{"seq":1}', address)
        got = sock.recv(65536)
    finally:
        sock.close()
    assert got.startswith(b'<86>nova.snapshots[%d]: ' % os.getpid()) and got.endswith(b'{"seq":1}')


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_time_counts_once_in_the_innermost_phase_and_changes_are_logged():
    clock = Clock()
    t = trace.start(clock)
    lines = []
    t.sink = lines.append
    with t.phase('plan'):
        clock.now += 1
        with t.phase('qemu_img', 'qemu-img info /x', change=False):
            clock.now += 2
        with t.phase('libvirt', 'creating a snapshot [snapshotCreateXML]', change=True):
            clock.now += 3
    clock.now += 0.5
    got = t.timings()
    assert got['plan'] == 1 and got['qemu_img'] == 2 and got['libvirt'] == 3 and got['total'] == 6.5
    assert sum(v for k, v in got.items() if k != 'total') <= got['total']
    assert len(lines) == 1 and 'libvirt creating a snapshot [snapshotCreateXML] (3.000s)' in lines[0]
    t.debug = True
    with t.phase('qemu_img', 'qemu-img info /x'):
        pass
    assert len(lines) == 2


def test_a_failed_step_is_logged_with_its_error_and_secrets_are_masked():
    t = trace.start(Clock())
    lines = []
    t.sink = lines.append
    with pytest.raises(RuntimeError):
        with t.phase('qemu_img', 'qemu-img create --object secret,id=s0,data=hunter2 x', change=True):
            raise RuntimeError('boom')
    assert 'failed: RuntimeError' in lines[0] and 'hunter2' not in lines[0] and 'data=***' in lines[0]
    t.secrets = ['s3cr3t-pass']
    t.log('opening with s3cr3t-pass\nnext line')
    assert lines[1].endswith('opening with ******** next line\n')


def test_qemu_img_reads_are_not_steps_and_writes_are():
    assert trace.qemu_img_step(['qemu-img', 'info', '--output=json', '/x'])[1] is False
    assert trace.qemu_img_step(['qemu-img', 'commit', '-b', 'a', 'b'])[1] is True
    assert trace.qemu_img_step(['cp', '--sparse=always', 'a', 'b'])[1] is True
