# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""What verification found, as plain data: problems, per-snapshot statuses, the summary, the
checksum verdicts, and the Prometheus textfile (node_exporter's format). Pure Python, no I/O.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fnmatch

# Problem kinds. `data` kinds mean the bytes of a layer or memory file are not what the snapshot
# froze (only restoring a copy or recreating the snapshot helps); the others can be repaired.
DATA_KINDS = ('checksum_mismatch', 'size_mismatch', 'missing_file', 'corrupt_image', 'memory_incomplete')
REPAIRABLE_KINDS = ('leaks', 'metadata_missing', 'backing_moved')
STATUSES = ('ok', 'failed', 'unverified')


class Problem(object):
    """One thing wrong: what (`message`), which `file` (or None), and the `fix`."""

    def __init__(self, kind, message, fix, file=None, snapshot=None, domain=None, **details):
        self.kind = kind
        self.message = message
        self.fix = fix
        self.file = file
        self.snapshot = snapshot
        self.domain = domain
        self.details = details

    @property
    def is_data(self):
        return self.kind in DATA_KINDS

    def to_dict(self):
        data = dict(kind=self.kind, problem=self.message, file=self.file, fix=self.fix)
        data.update(self.details)
        return data


def matches(name, pattern):
    """Whether snapshot `name` is selected by `pattern` (None: all; else an fnmatch glob)."""
    return pattern is None or name == pattern or fnmatch.fnmatchcase(name, pattern)


def checksum_verdict(recorded, facts, digests, backing=None):
    """Compare what a file is now with what was recorded for it.

    `recorded`: the checksums.json entry or None; `facts`: {size, mtime} now (None: missing);
    `digests`: {algorithm: digest} computed now (the run's algorithm, and the recorded one when it
    differs and can be computed). Returns (verdict, note): `match`, `mismatch`, `size_mismatch`,
    `missing`, `first` (nothing recorded: trusted on first verification), `rebased` (the collection
    rewrote the layer's backing link since, so the old digest no longer applies) or
    `algorithm_changed` (recorded with an algorithm not computed now: re-recorded, unverified).
    """
    if facts is None:
        return 'missing', 'file is missing'
    if recorded is None:
        return 'first', 'no checksum was recorded at creation: trusted on first verification'
    if recorded.get('backing', backing) != backing:
        return 'rebased', 'backing link changed from %s to %s since the checksum was recorded (re-recorded)' % (
            recorded.get('backing'), backing)
    if recorded.get('size') is not None and recorded['size'] != facts['size']:
        return 'size_mismatch', 'size %d, recorded %d' % (facts['size'], recorded['size'])
    algorithm = recorded.get('algorithm')
    if algorithm not in (digests or {}):
        return 'algorithm_changed', 'recorded with %s, which this run cannot compute; re-recorded with %s' % (
            algorithm, ', '.join(sorted(digests or {})))
    if recorded.get('digest') != digests[algorithm]:
        return 'mismatch', 'checksum mismatch: %s %s, recorded %s' % (algorithm, digests[algorithm], recorded.get('digest'))
    return 'match', None


def status_of(problems, verified_files, first_files):
    """`failed` with any problem; `unverified` when some file was only trusted on first sight (or
    nothing could be checked); else `ok`."""
    if problems:
        return 'failed'
    if first_files or not verified_files:
        return 'unverified'
    return 'ok'


class SnapshotReport(object):
    def __init__(self, domain, snap_id, name, parent=None, children=None):
        self.domain = domain
        self.id = snap_id
        self.name = name
        self.parent = parent
        self.children = list(children or [])
        self.problems = []
        self.checksums = []        # [{file, algorithm, digest, verdict, note}]
        self.bytes_read = 0
        self.seconds = 0.0
        self.verified_files = 0
        self.first_files = 0
        self.repairs = []          # what repair did (or would do in check mode)
        self.lost = None           # for a snapshot recreated from its parent: what it lost
        self.notes = []            # what could not be checked conclusively

    def add(self, kind, message, fix, file=None, **details):
        self.problems.append(Problem(kind, message, fix, file=file, snapshot=self.name, domain=self.domain, **details))

    @property
    def status(self):
        return status_of(self.problems, self.verified_files, self.first_files)

    @property
    def data_problems(self):
        return [p for p in self.problems if p.is_data]

    def to_dict(self):
        return dict(domain=self.domain, id=self.id, name=self.name, status=self.status,
                    trusted_on_first_verification=bool(self.first_files) and not self.problems,
                    problems=[p.to_dict() for p in self.problems], checksums=list(self.checksums),
                    bytes_read=self.bytes_read, seconds=round(self.seconds, 3), repairs=list(self.repairs),
                    lost=self.lost, notes=list(self.notes))


def summarize(reports, domain_problems=()):
    counts = dict((s, 0) for s in STATUSES)
    for r in reports:
        counts[r.status] += 1
    return dict(snapshots=len(reports), ok=counts['ok'], failed=counts['failed'], unverified=counts['unverified'],
                problems=sum(len(r.problems) for r in reports) + len(domain_problems),
                domain_problems=[dict(p.to_dict(), domain=p.domain) for p in domain_problems],
                bytes_read=sum(r.bytes_read for r in reports),
                seconds=round(sum(r.seconds for r in reports), 3),
                failed_snapshots=['%s/%s' % (r.domain, r.name) for r in reports if r.status == 'failed'])


def failure_message(reports, domain_problems=()):
    """One line naming every broken snapshot and what is wrong with it (None when nothing is)."""
    parts = []
    for r in reports:
        if r.problems:
            what = ['%s%s' % (p.message, ' (%s)' % p.file if p.file else '') for p in r.problems]
            parts.append("snapshot '%s' of '%s': FAILED - %s" % (r.name, r.domain, '; '.join(what)))
    for p in domain_problems:
        parts.append("domain '%s': %s%s" % (p.domain, p.message, ' (%s)' % p.file if p.file else ''))
    return ' | '.join(parts) or None


# -- Prometheus textfile collector -----------------------------------------------------------
def _label(value):
    return '"%s"' % str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def _labels(**labels):
    return '{%s}' % ','.join('%s=%s' % (k, _label(v)) for k, v in sorted(labels.items()))


METRICS = [
    ('nova_snapshot_count', 'gauge', 'Snapshots of the domain in the store.'),
    ('nova_snapshot_bytes', 'gauge', 'Bytes on disk of the frozen images and memory files of the domain\'s snapshots.'),
    ('nova_snapshot_oldest_age_seconds', 'gauge', 'Age of the domain\'s oldest snapshot.'),
    ('nova_snapshot_newest_age_seconds', 'gauge', 'Age of the domain\'s newest snapshot.'),
    ('nova_snapshot_longest_chain', 'gauge', 'Snapshots on the longest parent chain of the domain\'s tree.'),
    ('nova_snapshot_domain_problems', 'gauge', 'Problems found outside any one snapshot (orphans, drift).'),
    ('nova_snapshot_verify_ok', 'gauge', '1 when the snapshot\'s last verification passed, 0 when it failed, '
                                         '-1 when it is unverified (trusted on first verification).'),
    ('nova_snapshot_verify_problems', 'gauge', 'Problems the snapshot\'s last verification found.'),
    ('nova_snapshot_verify_timestamp_seconds', 'gauge', 'When the snapshot was last verified (Unix time).'),
    ('nova_snapshot_verify_bytes_read', 'gauge', 'Bytes the snapshot\'s last verification read.'),
    ('nova_snapshot_verify_last_run_timestamp_seconds', 'gauge', 'When nova_snapshot_verify last wrote this file.'),
]


def render_metrics(domains, reports, now):
    """The textfile: `domains` is [{domain, count, bytes, oldest, newest, longest_chain, problems}]
    (oldest/newest creation times, None without snapshots); `reports` the SnapshotReports."""
    samples = dict((m[0], []) for m in METRICS)
    for d in sorted(domains, key=lambda d: d['domain']):
        lab = _labels(domain=d['domain'])
        samples['nova_snapshot_count'].append((lab, d['count']))
        samples['nova_snapshot_bytes'].append((lab, d['bytes']))
        if d.get('oldest') is not None:
            samples['nova_snapshot_oldest_age_seconds'].append((lab, max(0, now - d['oldest'])))
            samples['nova_snapshot_newest_age_seconds'].append((lab, max(0, now - d['newest'])))
        samples['nova_snapshot_longest_chain'].append((lab, d['longest_chain']))
        samples['nova_snapshot_domain_problems'].append((lab, d.get('problems', 0)))
    for r in sorted(reports, key=lambda r: (r.domain, r.name)):
        lab = _labels(domain=r.domain, snapshot=r.name)
        samples['nova_snapshot_verify_ok'].append((lab, {'ok': 1, 'failed': 0, 'unverified': -1}[r.status]))
        samples['nova_snapshot_verify_problems'].append((lab, len(r.problems)))
        samples['nova_snapshot_verify_timestamp_seconds'].append((lab, now))
        samples['nova_snapshot_verify_bytes_read'].append((lab, r.bytes_read))
    samples['nova_snapshot_verify_last_run_timestamp_seconds'].append(('', now))
    lines = []
    for name, kind, help_text in METRICS:
        if not samples[name]:
            continue
        lines.append('# HELP %s %s' % (name, help_text))
        lines.append('# TYPE %s %s' % (name, kind))
        for lab, value in samples[name]:
            lines.append('%s%s %s' % (name, lab, _number(value)))
    return '\n'.join(lines) + '\n'


def _number(value):
    if isinstance(value, float) and value != int(value):
        return repr(value)
    return '%d' % value


def longest_chain(tree):
    """Snapshots on the longest root-to-leaf path of `tree` (0 for an empty tree)."""
    if not tree.snapshots:
        return 0
    return max([tree.depth(s.id) for s in tree.snapshots.values() if not tree.children(s.id)] or [0]) + 1
