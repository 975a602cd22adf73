# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""The audit trail's rules, without I/O: sealing a record into a line, verifying a chain, filtering.

Each line of `<storage_dir>/audit.log` is one JSON object (keys sorted, no spaces) with:

    seq    1, 2, 3, ... across every file of the trail (rotation keeps counting)
    prev   `hash` of the line before it (GENESIS for the very first line)
    hash   SHA-256 of the line's own canonical JSON without `hash` (so `prev` is covered too)

An edited line no longer matches its own `hash` (or, when the editor recomputed it, the next line's
`prev`); a deleted line leaves a `prev` that names a line that is not there and a gap in `seq`.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import re

GENESIS = '0' * 64


def canonical(record):
    """The one byte string a record hashes to (and is written as): sorted keys, no spaces, UTF-8."""
    return json.dumps(record, sort_keys=True, separators=(',', ':'), ensure_ascii=False).encode('utf-8')


def record_hash(record):
    body = dict((k, v) for k, v in record.items() if k != 'hash')
    return hashlib.sha256(canonical(body)).hexdigest()


def seal(record, prev_hash, prev_seq):
    """`record` made into the next line of the chain after the line (prev_hash, prev_seq); bytes, no newline."""
    sealed = dict(record)
    sealed.pop('hash', None)
    sealed['prev'] = prev_hash
    sealed['seq'] = prev_seq + 1
    sealed['hash'] = record_hash(sealed)
    return canonical(sealed)


def head_of(line):
    """(hash, seq) of a sealed line (bytes or str), the anchor the next line chains to."""
    record = json.loads(line)
    return record['hash'], record['seq']


class Break(object):
    """The first place the chain does not hold: file, 1-based line number in it, what is wrong."""

    def __init__(self, path, line, seq, reason):
        self.path = path
        self.line = line
        self.seq = seq
        self.reason = reason

    def to_dict(self):
        return dict(file=self.path, line=self.line, seq=self.seq, reason=self.reason)


def verify(files):
    """Check the chain over `files`: [(path, [line, ...])] oldest file first, each file's lines in order.

    Returns (records, first Break or None). The first line of the oldest file is the anchor when its
    `prev` is not GENESIS (older files were rotated away): only its own hash is checked then.
    """
    records = []
    prev = None
    for path, lines in files:
        for number, raw in enumerate(lines, 1):
            where = (path, number)
            text = raw.decode('utf-8', 'replace') if isinstance(raw, bytes) else raw
            text = text.rstrip('\n')
            try:
                record = json.loads(text)
                stated = record['hash']
                seq = record['seq']
            except (ValueError, KeyError, TypeError):
                return records, Break(where[0], where[1], None, 'not a sealed audit record (not JSON, or no hash/seq)')
            if text.encode('utf-8') != canonical(record) or record_hash(record) != stated:
                return records, Break(where[0], where[1], seq, 'the line was changed after it was written '
                                      '(its content does not match its hash)')
            if prev is None:
                if record.get('prev') == GENESIS and seq != 1:
                    return records, Break(where[0], where[1], seq, 'the first line of the trail has seq %s, not 1' % seq)
            elif record.get('prev') != prev[0] or seq != prev[1] + 1:
                missing = seq - prev[1] - 1
                why = ('%d line(s) before it are missing (seq %d follows %d)' % (missing, seq, prev[1]) if missing > 0
                       else 'it does not follow the line before it (prev hash or seq %d after %d do not match)'
                       % (seq, prev[1]))
                return records, Break(where[0], where[1], seq, why)
            prev = (stated, seq)
            records.append(record)
    return records, None


def matches(record, domain=None, operation=None, who=None, since=None, until=None):
    """Whether `record` passes the filters: domain / operation / who (any of the names in `who`),
    time between since and until (ISO 8601 UTC strings compare in time order)."""
    if domain is not None:
        domains = record.get('domain')
        domains = domains if isinstance(domains, list) else [domains]
        if domain not in domains:
            return False
    if operation is not None and operation not in (record.get('operation'), record.get('module')):
        return False
    if who is not None and who not in [str(v) for v in (record.get('who') or {}).values() if v is not None]:
        return False
    when = record.get('time') or ''
    if since is not None and when < since:
        return False
    if until is not None and when > until:
        return False
    return True


_TIME = re.compile(r'^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?)?Z?$')


def normalize_time(text):
    """'2026-12-02', '2026-12-02T01:30', '2026-12-02 01:30:05Z' -> '2026-12-02T01:30:05Z', the form the
    trail's `time` has (UTC, whole seconds), so times compare as strings. None for text of another shape."""
    m = _TIME.match(text.strip())
    if not m:
        return None
    day, hh, mm, ss = m.groups()
    return '%sT%s:%s:%sZ' % (day, hh or '00', mm or '00', ss or '00')
