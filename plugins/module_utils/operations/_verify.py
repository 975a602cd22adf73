# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Verification and repair of a domain's snapshots (nova_snapshot_verify), and recording checksums
when a snapshot is taken (nova_snapshot's `checksum`).

Verification reads without the domain's lock (it can take minutes) and writes only checksums.json
files, under the lock. Repair verifies first, then takes the lock, reloads the tree, and fixes
only what is broken, each step crash-safe (new files under temporary names, renamed into place;
the store saved once the files are in place) and idempotent (a repaired problem is not found again).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import time

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._checksum import (
    ChecksumFile,
    Throttle,
    HAS_BLAKE3,
    file_digest,
    file_digests,
    file_facts,
    save_header,
)
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import fsync_dir, install, replace_file
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._chains import real
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._snapshot_xml import SnapshotXML
from ansible_collections.nova.snapshots.plugins.module_utils.model._crash import LEAKS_COPIED, MOVED_REBASED, RECREATE_FILES, crash_point
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Failed, NovaError, Refused, SnapshotNotFound
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import SnapshotDisk, iso_time
from ansible_collections.nova.snapshots.plugins.module_utils.operations._restore_copy import CopyRestorer, find_by_checksum
from ansible_collections.nova.snapshots.plugins.module_utils.model._verify_report import (
    SnapshotReport,
    checksum_verdict,
    longest_chain,
)
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._memory_codec import is_encoded
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._keyed_images import WrongKey
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._luks import image_encrypted
from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import keyed_images, open_chains

FIX_RESTORE = ('restore the file from a verified copy; for a snapshot without children, '
               'state=repaired with recreate=from_parent replaces it by its parent\'s state')


def frozen_files(snap):
    """[(path, format or None)] of the files a snapshot froze: what its checksums cover."""
    if not snap.has_overlays:
        return []       # an internal snapshot lives inside an image that keeps changing
    files = [(d.file_path, d.format) for d in snap.disk_files]
    if snap.memory_file:
        files.append((snap.memory_file, None))
    return files


# -- recording at creation (nova_snapshot / nova_policy `checksum`) -------------------------
def record_checksums(manager, tree, snap, algorithm, throttle=None):
    """Checksum every file `snap` froze and write its checksums.json. Returns the entries.

    Call it after the snapshot is saved in the store, under the domain's lock; `algorithm`
    `none` (or None) records nothing."""
    if not algorithm or algorithm == 'none':
        return []
    cf = ChecksumFile(manager.store.snapshot_dir(snap.id))
    data = cf.load()
    now = int(time.time())
    out = []
    for path, fmt in frozen_files(snap):
        facts = file_facts(path)
        if facts is None:
            continue
        digest, _n = file_digest(path, algorithm, throttle)
        entry = dict(path=path, size=facts['size'], mtime=facts['mtime'], algorithm=algorithm, digest=digest,
                     backing=_backing_of(manager, path, fmt), recorded_at=now, verified_at=None,
                     result='recorded at creation')
        data['files'][path] = entry
        out.append(entry)
    cf.save(data)
    return out


def _backing_of(manager, path, fmt):
    if fmt in (None, 'raw'):
        return None
    try:
        return manager.qemu_img.info(path, fmt=fmt).backing_file
    except NovaError:
        return None


# -- verification -----------------------------------------------------------------------------
class Verifier(object):
    """Verifies the snapshots of one domain (a SnapshotManager) with one algorithm."""

    def __init__(self, manager, algorithm='sha256', throttle=None, keyed=None):
        self.m = manager
        self.keyed = keyed         # a KeyedQemuImg: qemu-img check opens LUKS layers with the domain's key
        self.algorithm = algorithm
        self.throttle = throttle or Throttle()
        self.pending = {}          # snap id -> {path: entry} to write into checksums.json
        self._tree = None
        self._live = set()

    @property
    def domain(self):
        return self.m.domain.name

    def libvirt_snapshots(self):
        return dict((name, SnapshotXML(xml)) for name, xml in self.m.domain.snapshot_xmls())

    def verify(self, tree, snaps, adopted=()):
        """([SnapshotReport] for `snaps`, [Problem] of the domain as a whole)."""
        self._tree = tree
        # images the running VM writes: qemu-img check -U of them sees metadata in flight
        self._live = set(real(t) for t in self.m.writable_tops(tree)) & self.m.open_images()
        in_libvirt = self.libvirt_snapshots()
        reports = [self.verify_one(tree, s, in_libvirt) for s in snaps]
        return reports, self.domain_problems(tree, in_libvirt, adopted)

    def verify_one(self, tree, snap, in_libvirt):
        started = time.time()
        parent = tree.snapshots.get(snap.parent_snapshot)
        r = SnapshotReport(self.domain, snap.id, snap.name, parent=parent.name if parent else None,
                           children=[c.name for c in tree.children(snap.id)])
        recorded = ChecksumFile(self.m.store.snapshot_dir(snap.id)).load()
        self._check_tree(tree, snap, r)
        self._check_metadata(tree, snap, r, in_libvirt)
        if snap.has_overlays:
            for d in snap.disk_files:
                self._check_layer(snap, d, r, recorded['files'].get(d.file_path))
            if snap.memory_file:
                self._check_memory(snap, r, recorded['files'].get(snap.memory_file))
        else:
            for d in snap.disk_files:
                self._check_internal(snap, d, r)
        r.seconds = time.time() - started
        return r

    # -- files ----------------------------------------------------------------------------
    def _checksum(self, snap, r, path, entry, backing=None, trust=True):
        facts = file_facts(path)
        digest = digests = None
        if facts is not None:
            algorithms = [self.algorithm]
            old = (entry or {}).get('algorithm')
            if old and old != self.algorithm and (old != 'blake3' or HAS_BLAKE3):
                algorithms.append(old)       # verified with what was recorded, re-recorded with ours: one read
            digests, n = file_digests(path, algorithms, self.throttle)
            digest = digests[self.algorithm]
            r.bytes_read += n
        verdict, note = checksum_verdict(entry, facts, digests, backing)
        r.checksums.append(dict(file=path, algorithm=self.algorithm, digest=digest, verdict=verdict, note=note))
        now = int(time.time())
        new = dict(path=path, size=facts and facts['size'], mtime=facts and facts['mtime'], algorithm=self.algorithm,
                   digest=digest, backing=backing, verified_at=now)
        if verdict == 'match':
            r.verified_files += 1
            self.pending.setdefault(snap.id, {})[path] = dict(entry, algorithm=self.algorithm, digest=digest,
                                                              verified_at=now, result='ok')
        elif verdict == 'mismatch':
            r.add('checksum_mismatch', 'checksum mismatch', FIX_RESTORE, file=path,
                  recorded=entry.get('digest'), found=digests[entry['algorithm']], algorithm=entry['algorithm'])
            self.pending.setdefault(snap.id, {})[path] = dict(entry, verified_at=now, result='checksum mismatch')
        elif verdict == 'size_mismatch':
            r.add('size_mismatch', 'size mismatch (%s): the file was truncated or rewritten' % note, FIX_RESTORE,
                  file=path, recorded_size=entry.get('size'), size=facts['size'])
        elif verdict in ('first', 'rebased', 'algorithm_changed'):
            r.first_files += 1
            if trust and digest is not None:
                result = 'trusted on first verification' if verdict == 'first' else note
                self.pending.setdefault(snap.id, {})[path] = dict(new, recorded_at=now, result=result)
        return verdict

    def _check_layer(self, snap, d, r, entry):
        path = d.file_path
        if not os.path.exists(path):
            r.add('missing_file', 'frozen image of %s is missing' % d.device,
                  'restore it, or state=repaired with search_paths where it was moved to', file=path,
                  device=d.device)
            return
        try:
            info = self.m.qemu_img.info(path, fmt=d.format)
        except NovaError as e:
            r.add('corrupt_image', 'qemu-img cannot open it: %s' % e.msg, FIX_RESTORE, file=path)
            return
        problems_before = len(r.problems)
        if d.format == 'qcow2':
            self._check_backing(snap, d, r, info)
            if not [p for p in r.problems[problems_before:] if p.kind == 'backing_missing']:
                self._qemu_check(r, path)     # qemu-img check cannot open an image whose backing is gone
        self._checksum(snap, r, path, entry, backing=info.backing_file,
                       trust=len(r.problems) == problems_before)

    def _qemu_check(self, r, path):
        try:
            res = (self.keyed or self.m.qemu_img).check(path, 'qcow2')
        except WrongKey as e:       # the key was checked against the domain's verifier: the header is damaged
            r.add('corrupt_image', 'qemu-img check cannot unlock it with the domain\'s key (a damaged LUKS header, '
                  'or a layer encrypted with another key): %s' % e.msg, FIX_RESTORE, file=path)
            return
        except NovaError as e:
            r.add('corrupt_image', 'qemu-img check failed: %s' % e.msg, FIX_RESTORE, file=path)
            return
        live = real(path) in self._live
        if res.get('corruptions') or res.get('check-errors'):
            r.add('corrupt_image', 'qemu-img check found %d corruptions and %d check errors%s'
                  % (res.get('corruptions', 0), res.get('check-errors', 0),
                     ' (the running VM writes this image: confirm with the VM stopped)' if live else ''),
                  FIX_RESTORE, file=path)
        if res.get('leaks') and live:
            r.notes.append('qemu-img check of %s, which the running VM writes, counted %d leaked clusters: normal '
                           'while QEMU has metadata in flight, not a problem; check it with the VM stopped'
                           % (path, res['leaks']))
        elif res.get('leaks'):
            r.add('leaks', 'qemu-img check found %d leaked clusters' % res['leaks'],
                  'state=repaired frees them on a copy, proves it equal, and swaps it in', file=path,
                  leaks=res['leaks'])

    def _check_backing(self, snap, d, r, info):
        raw_link = info.raw.get('backing-filename')
        if d.backing_file and (not info.backing_file or real(info.backing_file) != real(d.backing_file)):
            r.add('backing_link', 'backs on %s, the record says %s' % (info.backing_file, d.backing_file),
                  'rebase it onto the recorded image (qemu-img rebase -u) or fix the record', file=d.file_path)
            return
        if not info.backing_file:
            return
        if raw_link and not os.path.isabs(raw_link):
            r.add('backing_link', 'relative backing link %r' % raw_link,
                  'qemu-img rebase -u -b <absolute path> -F <format>', file=d.file_path)
        if not os.path.exists(info.backing_file):
            r.add('backing_missing', 'its backing file %s is missing' % info.backing_file,
                  'state=repaired with search_paths where it was moved to', file=d.file_path,
                  missing=info.backing_file)
            return
        want = self._format_of(info.backing_file)
        if not info.backing_format:
            r.add('backing_link', 'backing link to %s names no format' % info.backing_file,
                  'qemu-img rebase -u -F %s -b %s' % (want, info.backing_file), file=d.file_path)
        elif want and info.backing_format != want:
            r.add('backing_link', 'backing link says format %s, %s is %s' % (info.backing_format, info.backing_file,
                                                                             want),
                  'qemu-img rebase -u -F %s -b %s' % (want, info.backing_file), file=d.file_path)

    def _format_of(self, path):
        """The format the records give `path` (a frozen image of some snapshot), else its header's."""
        for s in self._tree.snapshots.values():
            for d in s.disk_files:
                if real(d.file_path) == real(path):
                    return d.format
        with open(path, 'rb') as f:
            return 'qcow2' if f.read(4) == b'QFI\xfb' else 'raw'

    def _check_memory(self, snap, r, entry):
        path = snap.memory_file
        if not os.path.exists(path):
            r.add('missing_file', 'memory file is missing', FIX_RESTORE, file=path)
            return
        if is_encoded(path):
            # a compressed or encrypted nova memory file: authenticated when a revert decodes it
            self._checksum(snap, r, path, entry)
            return
        header = save_header(path)
        size = os.path.getsize(path)
        before = len(r.problems)
        if header is None or not (header['complete'] or header['partial']):
            r.add('memory_incomplete', 'not a libvirt save image (no LibvirtQemudSave header)', FIX_RESTORE, file=path)
        elif header['partial']:
            r.add('memory_incomplete', 'partial libvirt save image (LibvirtQemudPart): the save never finished',
                  FIX_RESTORE, file=path)
        elif size < header['min_size']:
            r.add('memory_incomplete', 'memory file truncated: %d bytes, its header alone needs %d'
                  % (size, header['min_size']), FIX_RESTORE, file=path)
        self._checksum(snap, r, path, entry, trust=len(r.problems) == before)

    def _check_internal(self, snap, d, r):
        if not os.path.exists(d.file_path):
            r.add('missing_file', 'image holding internal snapshot is missing', FIX_RESTORE, file=d.file_path)
            return
        try:
            info = self.m.qemu_img.info(d.file_path, fmt=d.format)
        except NovaError as e:
            r.add('corrupt_image', 'qemu-img cannot open it: %s' % e.msg, FIX_RESTORE, file=d.file_path)
            return
        if snap.name not in info.snapshots:
            r.add('corrupt_image', 'the image holds no internal snapshot %s' % snap.name, FIX_RESTORE, file=d.file_path)
            return
        before = len(r.problems)
        self._qemu_check(r, d.file_path)
        if len(r.problems) == before:
            r.verified_files += 1

    # -- metadata and tree ----------------------------------------------------------------
    def _check_metadata(self, tree, snap, r, in_libvirt):
        sx = in_libvirt.get(snap.name)
        parent = tree.snapshots.get(snap.parent_snapshot)
        if sx is None:
            can = self.m.store.snapshot_xml(snap.id) is not None
            r.add('metadata_missing', "libvirt has no snapshot metadata for it (virsh snapshot-list lacks it)",
                  'state=repaired redefines it from the store\'s saved XML' if can else
                  'no saved XML in the store: delete and retake the snapshot', file=self.m.store.xml_path(snap.id))
        elif (sx.parent or None) != (parent.name if parent else None):
            r.add('metadata_drift', "libvirt says its parent is %s, the store says %s"
                  % (sx.parent, parent.name if parent else None),
                  'state=repaired redefines libvirt\'s metadata from the store')

    def _check_tree(self, tree, snap, r):
        if snap.parent_snapshot and snap.parent_snapshot not in tree.snapshots:
            r.add('tree', 'its parent %s is not in the store' % snap.parent_snapshot,
                  'the parent was lost: treat this snapshot as a root (re-parent it) after checking its chain')
            return
        path = tree.path_to_root(snap.id)
        top = tree.snapshots[path[-1]]
        if top.parent_snapshot in tree.snapshots:
            r.add('tree', 'its ancestry loops (%s)' % ' -> '.join(tree.snapshots[i].name for i in path),
                  'the store was edited by hand: fix parent_snapshot in metadata.json')
            return
        parent = tree.snapshots.get(snap.parent_snapshot)
        if parent is None or not (snap.has_overlays and parent.has_overlays) or snap.merge_parents:
            return
        for d in snap.disk_files:
            pd = parent.disk(d.device)
            if pd is None or not os.path.exists(d.file_path):
                continue
            try:
                chain = [real(p) for p in self.m.view.chain(d.file_path)]
            except NovaError:
                continue        # a broken chain is reported by the backing checks
            if real(pd.file_path) not in chain:
                r.add('tree', 'disk %s does not build on its parent %s (%s is not in its chain)'
                      % (d.device, parent.name, pd.file_path),
                      'the records or the images were changed outside the collection', file=d.file_path)

    def domain_problems(self, tree, in_libvirt, adopted):
        from ansible_collections.nova.snapshots.plugins.module_utils.model._verify_report import Problem
        out = []
        for name in adopted:
            out.append(Problem('unrecorded', "libvirt has snapshot '%s' the store did not record (made with virsh?)"
                               % name, 'state=repaired (or any nova.snapshots task) adopts it into the store',
                               domain=self.domain))
        for name in tree.deleting:
            out.append(Problem('interrupted', "a delete of '%s' was interrupted" % name,
                               'the next nova.snapshots task that changes the domain finishes it', domain=self.domain))
        root = os.path.join(self.m.store.root, 'snapshots')
        if os.path.isdir(root):
            for entry in sorted(os.listdir(root)):
                if entry not in tree.snapshots:
                    out.append(Problem('orphan', 'store directory belongs to no snapshot',
                                       'check it and delete it by hand', file=os.path.join(root, entry),
                                       domain=self.domain))
        return out

    # -- recording results ----------------------------------------------------------------
    def write_pending(self, tree):
        """Write what verification learnt into each snapshot's checksums.json (caller holds the lock).
        Returns the ids whose recorded checksums changed (new or re-recorded), which counts as a change."""
        changed = []
        for snap_id, entries in sorted(self.pending.items()):
            snap = tree.snapshots.get(snap_id)
            if snap is None or not os.path.isdir(self.m.store.snapshot_dir(snap_id)):
                continue
            cf = ChecksumFile(self.m.store.snapshot_dir(snap_id))
            data = cf.load()
            keep = set(p for p, _f in frozen_files(snap))
            for path, entry in entries.items():
                old = data['files'].get(path)
                if old is None or old.get('digest') != entry.get('digest') or old.get('backing') != entry.get('backing'):
                    changed.append(snap_id)
                data['files'][path] = entry
            data['files'] = dict((p, e) for p, e in data['files'].items() if p in keep)
            data['last'] = dict(verified_at=int(time.time()), algorithm=self.algorithm)
            cf.save(data)
        self.pending = {}
        return sorted(set(changed))


def domain_stats(manager, tree, problems):
    created = [s.creation_time for s in tree.snapshots.values() if s.creation_time is not None]
    total = 0
    seen = set()
    for s in tree.snapshots.values():
        for path, _fmt in frozen_files(s):
            if real(path) not in seen and os.path.exists(path):
                seen.add(real(path))
                total += os.stat(path).st_blocks * 512
    return dict(domain=manager.domain.name, count=len(tree.snapshots), bytes=total,
                oldest=min(created) if created else None, newest=max(created) if created else None,
                longest_chain=longest_chain(tree), problems=len(problems))


# -- repair -----------------------------------------------------------------------------------
class Repairer(object):
    """Turns a report's problems into repair steps; applies them unless in check mode."""

    def __init__(self, manager, verifier, check_mode, search_paths=None, recreate=None, crypt=None):
        self.m = manager
        self.crypt = crypt      # the domain's key: layers it rewrites or makes in an encrypted chain stay LUKS
        self.v = verifier
        self.check_mode = check_mode
        self.search_paths = search_paths or []
        self.recreate = recreate
        self.moved = {}            # missing path -> where it was found

    def repair(self, tree, report, snap):
        """Repair what `report` found for `snap`; appends to report.repairs; True when something changed."""
        changed = False
        kinds = set(p.kind for p in report.problems)
        if kinds & set(['metadata_missing', 'metadata_drift']):
            changed |= self._redefine(tree, snap, report)
        for p in [p for p in report.problems if p.kind == 'leaks']:
            changed |= self._fix_leaks(tree, report, p.file)
        handled = set()
        for p in [p for p in report.problems if p.kind in ('missing_file', 'backing_missing')]:
            missing = p.details.get('missing', p.file)
            if missing != snap.memory_file:
                changed |= self._find_moved(tree, report, missing)
                if missing in self.moved:
                    handled.add(p.file)
        for p in report.data_problems:
            if p.file not in handled and p.file and os.path.exists(p.file) and self._restore_copy(tree, report, snap, p.file):
                handled.add(p.file)
                changed = True
        data = [p for p in report.data_problems if p.file not in handled]
        if data:
            changed |= self._recreate(tree, report, snap, data)
        return changed

    def _restore_copy(self, tree, report, snap, path):
        """A corrupt file restored from a verified copy under search_paths (see _restore_copy.py)."""
        if not self.search_paths:
            return False
        _owner, entry = self._recorded_entry(tree, path)
        restorer = CopyRestorer(self.m, self.search_paths, self.check_mode, self.v.throttle)
        if not restorer.restore(snap, path, entry, lambda text: self._note(report, text)):
            return False
        if not self.check_mode:
            self._rerecord(tree, path, 'restored from a verified copy')
        return True

    def _note(self, report, text):
        report.repairs.append(('would ' if self.check_mode else '') + text)

    # metadata ------------------------------------------------------------------------------
    def _redefine(self, tree, snap, report):
        xml = self.m.store.snapshot_xml(snap.id)
        if xml is None:
            self._note(report, 'not redefine libvirt metadata of %s: the store has no saved XML' % snap.name)
            return False
        self._note(report, "redefine libvirt's snapshot metadata of %s from %s" % (snap.name, self.m.store.xml_path(snap.id)))
        if self.check_mode:
            return True
        sx = SnapshotXML(xml)
        parent = tree.snapshots.get(snap.parent_snapshot)
        sx.parent = parent.name if parent else None
        self.m.domain.redefine_snapshot(sx.to_string(), current=snap.id == tree.current)
        return True

    # leaks ---------------------------------------------------------------------------------
    def _fix_leaks(self, tree, report, path):
        if real(path) in set(real(t) for t in self.m.writable_tops(tree)) and real(path) in self.m.open_images():
            self._note(report, 'not repair leaks in %s: the running VM writes to it (stop the VM, then repair)' % path)
            return False
        self._note(report, 'repair leaked clusters of %s on a copy (qemu-img check -r leaks), prove it equal '
                           '(qemu-img compare) and swap it in' % path)
        if self.check_mode:
            return True
        copy = os.path.join(os.path.dirname(path), '.%s.leakfix-partial' % os.path.basename(path))
        if os.path.exists(copy):
            os.unlink(copy)           # left by a run that was killed: start over
        try:
            self.m.qemu_img.copy_sparse(path, copy)
            self.m.qemu_img.repair_leaks(copy)
            res = self.m.qemu_img.check(copy, 'qcow2')
            if res.get('leaks') or res.get('corruptions'):
                raise Failed('qemu-img check -r leaks left %s with %s leaks and %s corruptions; %s was not changed'
                             % (copy, res.get('leaks'), res.get('corruptions'), path))
            if not self.m.qemu_img.compare(path, copy):
                raise Failed('the leak-repaired copy of %s differs from it (qemu-img compare); %s was not changed'
                             % (path, path))
            crash_point(LEAKS_COPIED)
            install(copy, path)
        finally:
            if os.path.exists(copy):
                os.unlink(copy)
        self.m.view.invalidate()
        self._rerecord(tree, path, 'leaks repaired (copy proven equal with qemu-img compare)')
        return True

    def _rerecord(self, tree, path, result):
        """A file the repair rewrote (same content to the guest, other bytes): record its new checksum."""
        for s in tree.snapshots.values():
            if path in [p for p, _f in frozen_files(s)]:
                cf = ChecksumFile(self.m.store.snapshot_dir(s.id))
                data = cf.load()
                fmt = dict(frozen_files(s)).get(path)
                digest, _n = file_digest(path, self.v.algorithm, self.v.throttle)
                facts = file_facts(path)
                now = int(time.time())
                data['files'][path] = dict(path=path, size=facts['size'], mtime=facts['mtime'],
                                           algorithm=self.v.algorithm, digest=digest,
                                           backing=_backing_of(self.m, path, fmt), recorded_at=now,
                                           verified_at=now, result=result)
                cf.save(data)

    # moved files ---------------------------------------------------------------------------
    def _recorded_entry(self, tree, path):
        for s in tree.snapshots.values():
            entry = ChecksumFile(self.m.store.snapshot_dir(s.id)).load()['files'].get(path)
            if entry and entry.get('digest'):
                return s, entry
        return None, None

    def _find_moved(self, tree, report, missing):
        if missing in self.moved:
            return False
        owner, entry = self._recorded_entry(tree, missing)
        if entry is None:
            self._note(report, 'not look for %s: no checksum was recorded for it, so a copy could not be told '
                               'from another file' % missing)
            return False
        if not self.search_paths:
            self._note(report, 'not look for %s: give search_paths where it may have been moved to' % missing)
            return False
        found = self._search(entry)
        if found is None:
            self._note(report, 'not find %s (%s %s, %d bytes) under %s' % (
                missing, entry['algorithm'], entry['digest'], entry['size'], ', '.join(self.search_paths)))
            return False
        self.moved[missing] = found
        uppers = self._uppers(tree, missing)
        busy = [u for u in uppers if real(u) in self.m.open_images()]
        if busy:
            self._note(report, 'not repoint %s to %s: the running VM holds %s open (stop it first)'
                       % (missing, found, ', '.join(busy)))
            return False
        self._note(report, 'repoint %s (found by checksum at %s): records, and the backing link of %s'
                   % (missing, found, ', '.join(uppers) or 'no image'))
        if self.check_mode:
            return True
        fmt = 'raw'
        for s in tree.snapshots.values():
            for d in s.disk_files:
                if d.file_path == missing:
                    fmt = d.format
        for upper in uppers:
            self.m.qemu_img.rebase(upper, found, fmt, unsafe=True)
        crash_point(MOVED_REBASED)
        tree.repoint_image(missing, found)
        self.m.store.save(tree)
        cf = ChecksumFile(self.m.store.snapshot_dir(owner.id))
        data = cf.load()
        moved = data['files'].pop(missing)
        data['files'][found] = dict(moved, path=found, moved_from=missing)
        cf.save(data)
        self.m.view.invalidate()
        return True

    def _search(self, entry):
        return find_by_checksum(self.search_paths, entry, self.v.throttle)

    def _uppers(self, tree, missing):
        """Images whose backing link names `missing` (found without walking through it)."""
        candidates = set(self.m.writable_tops(tree))
        for s in tree.snapshots.values():
            candidates.update(d.file_path for d in s.disk_files)
            for d in s.disk_files:
                candidates.add(self.m.store.overlay_path(s.id, d.device))
        out = []
        for c in sorted(candidates):
            if c == missing or not os.path.isfile(c):
                continue
            try:
                info = self.m.qemu_img.info(c, fmt='qcow2')
            except NovaError:
                continue
            if info.raw.get('backing-filename') == missing or info.backing_file == missing:
                out.append(c)
        return out

    # recreate ------------------------------------------------------------------------------
    def _recreate(self, tree, report, snap, data):
        what = ', '.join(sorted(set('%s (%s)' % (p.message, p.file) for p in data)))
        kids = tree.descendants(snap.id)
        if kids:
            self._note(report, "not repair %s: its data is corrupt (%s) and it has descendants %s, which build on "
                               "it; repairing it would silently change what they show. Restore the file from a "
                               "verified copy" % (snap.name, what, ', '.join(k.name for k in kids)))
            report.add('refused', 'corrupt snapshot with children: not repaired', 'restore the file from a verified '
                       'copy', affected=[k.name for k in kids])
            return False
        if self.recreate != 'from_parent':
            self._note(report, 'not repair %s (%s): give recreate=from_parent to replace it by a new snapshot of '
                               "its parent's state" % (snap.name, what))
            return False
        parent = tree.snapshots.get(snap.parent_snapshot)
        why = None
        if parent is None:
            why = 'it has no parent'
        elif not (snap.has_overlays and parent.has_overlays):
            why = 'recreate works for external, memory and disk_only snapshots only'
        else:
            bad = self.v.verify_one(tree, parent, self.v.libvirt_snapshots()).data_problems
            self.v.pending.pop(parent.id, None)
            if bad:
                why = 'its parent %s is damaged too (%s)' % (parent.name, bad[0].message)
            missing = [d.device for d in snap.disk_files if parent.disk(d.device) is None]
            if missing:
                why = 'its parent %s does not cover disk %s' % (parent.name, ', '.join(missing))
        if why:
            self._note(report, 'not recreate %s: %s' % (snap.name, why))
            return False
        lost = ("what %s held beyond its parent %s is lost: the disk writes made between the two snapshots%s; "
                "%s now shows %s's state" % (snap.name, parent.name, ' and its RAM state' if snap.memory_file else '',
                                             snap.name, parent.name))
        tops = set(real(t) for t in self.m.writable_tops(tree))
        still = [d.file_path for d in snap.disk_files
                 if any(real(d.file_path) in [real(p) for p in self._chain(t)] for t in tops)]
        if still:
            lost += ('; the VM\'s (or a branch\'s) current disks still build on the damaged %s: revert to %s '
                     'to leave it' % (', '.join(still), snap.name))
        self._note(report, 'recreate %s from its parent %s (%s)' % (snap.name, parent.name, lost))
        report.lost = lost
        if self.check_mode:
            return True
        store = self.m.store
        directory = store.snapshot_dir(snap.id)
        store.make_dir(directory)
        disks = []
        for d in snap.disk_files:
            pd = parent.disk(d.device)
            path = os.path.join(directory, 'recreated_%s.qcow2' % d.device)
            partial = path + '.partial'
            for leftover in (partial, path):
                if os.path.exists(leftover) and leftover not in [x.file_path for x in snap.disk_files]:
                    os.unlink(leftover)
            if self.crypt is not None and (getattr(snap, 'encrypted', False) or self._encrypted_chain(pd.file_path)):
                self.crypt.create_overlay(partial, pd.file_path, pd.format)     # encrypted stays encrypted
            else:
                self.m.qemu_img.create_overlay(partial, pd.file_path, pd.format)
            os.chmod(partial, 0o600)
            if store.owner:
                os.chown(partial, store.owner[0], store.owner[1])
            os.rename(partial, path)
            disks.append(SnapshotDisk(d.device, path, 'qcow2', pd.file_path))
        memory = None
        if parent.memory_file:
            memory = os.path.join(directory, 'memory-recreated.save')
            partial = memory + '.partial'
            if os.path.exists(partial):
                os.unlink(partial)
            self.m.qemu_img.copy_sparse(parent.memory_file, partial)
            os.chmod(partial, 0o600)
            install(partial, memory)
        fsync_dir(directory)
        crash_point(RECREATE_FILES)
        old_memory = snap.memory_file
        snap.disk_files = disks
        snap.memory_file = memory
        snap.vm_state = parent.vm_state
        store.save(tree)
        cf = ChecksumFile(directory)
        cf.save(dict(files={}, recreated_from=parent.id, recreated_from_name=parent.name,
                     recreated_at=iso_time(time.time()), lost=lost))
        record_checksums(self.m, tree, snap, self.v.algorithm, self.v.throttle)
        xml = store.snapshot_xml(snap.id)
        if xml is not None:
            sx = SnapshotXML(xml)
            sx.parent = parent.name
            if memory:
                sx.memory_mode, sx.memory_file = 'external', memory
            else:
                sx.memory_mode, sx.memory_file = 'no', None
            sx.state = parent.vm_state
            store.save_snapshot_xml(snap.id, sx.to_string())
            self.m.domain.redefine_snapshot(sx.to_string(), current=snap.id == tree.current)
        if old_memory and old_memory != memory and store.owns(old_memory) and os.path.exists(old_memory):
            os.unlink(old_memory)
        self.m.view.invalidate()
        return True

    def _encrypted_chain(self, top):
        return any(image_encrypted(self.m.view.info(p)) for p in self._chain(top))

    def _chain(self, top):
        try:
            return self.m.view.chain(top)
        except NovaError:
            return [top]


# -- the module's whole run -------------------------------------------------------------------
def _store_domains(storage_dir):
    """The domains that have a store under `storage_dir` (the name its tree records, else its directory's)."""
    if not os.path.isdir(storage_dir):
        return []
    names = set()
    for entry in os.listdir(storage_dir):
        path = os.path.join(storage_dir, entry, 'metadata.json')
        if entry.startswith('.') or os.path.islink(os.path.join(storage_dir, entry)) or not os.path.isfile(path):
            continue
        try:
            with open(path) as f:
                names.add(json.load(f).get('vm_name') or entry)
        except (IOError, OSError, ValueError):
            names.add(entry)
    return sorted(names)


def _is_glob(pattern):
    return pattern is not None and any(c in pattern for c in '*?[')


def check_metrics_path(path):
    """Refuse a metrics file that could not be written, before anything else is done."""
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise Refused('metrics_file %s: directory %s does not exist' % (path, directory))
    if not os.access(directory, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise Refused('metrics_file %s: not writable here' % path)
    if os.path.isdir(path):
        raise Refused('metrics_file %s is a directory' % path)


def write_metrics(path, text):
    replace_file(os.path.abspath(path), text, mode=0o644)
    os.chmod(path, 0o644)


def run_verify(make_manager, params, check_mode):
    """Verify (and with state=repaired, repair) the selected snapshots of the selected domains.

    `make_manager(domain)` -> SnapshotManager. Returns the module's result; raises NovaError for bad
    input before anything is read or written."""
    from ansible_collections.nova.snapshots.plugins.module_utils.model._verify_report import (
        failure_message, matches, render_metrics, summarize)
    check_metrics_path(params.get('metrics_file'))
    if params.get('io_limit') is not None and params['io_limit'] <= 0:
        raise Refused('io_limit must be a positive number of bytes per second (got %s)' % params['io_limit'])
    domains = [params['domain']] if params.get('domain') else _store_domains(params['storage_dir'])
    managers = [make_manager(d) for d in domains]          # an unknown domain fails here, before any write
    throttle = Throttle(params.get('io_limit'))
    pattern = params.get('name')
    reports, domain_problems, stats, changed = [], [], [], False
    keyed = []
    for m in managers:
        tree, adopted = m.load(write=False)
        if pattern is not None and not _is_glob(pattern) and tree.by_name(pattern) is None:
            raise SnapshotNotFound(m.domain.name, pattern)
        # no key, wrong key: refused here; a repair works through m.qemu_img, which then opens LUKS layers
        if params.get('state') == 'repaired':
            crypt = open_chains(m, params.get('key_file'), tree, 'repair')
            keyed.append((m.qemu_img if crypt else None, crypt))
        else:
            keyed.append((keyed_images(m, params, tree, 'verification'), None))
    for m, (k, crypt) in zip(managers, keyed):
        r, p, s, c = _one_domain(m, params, check_mode, throttle, pattern, matches, k, crypt)
        reports += r
        domain_problems += p
        stats.append(s)
        changed = changed or c
    summary = summarize(reports, domain_problems)
    if params.get('metrics_file') and not check_mode:
        write_metrics(params['metrics_file'], render_metrics(stats, reports, int(time.time())))
    result = dict(changed=changed, snapshots=[r.to_dict() for r in reports], summary=summary,
                  metrics_file=params.get('metrics_file'))
    msg = failure_message(reports, domain_problems)
    if msg and params.get('fail_on_problems', True):
        result['failed'] = True
        result['msg'] = msg
    return result


def _one_domain(m, params, check_mode, throttle, pattern, matches, keyed=None, crypt=None):
    tree, adopted = m.load(write=False)
    snaps = [s for s in tree.ordered() if matches(s.name, pattern)]
    algorithm = params.get('checksum') or 'sha256'
    v = Verifier(m, algorithm, throttle, keyed)
    reports, problems = v.verify(tree, snaps, adopted)
    changed = False
    bad = [r.id for r in reports if r.problems]
    search, recreate = params.get('search_paths'), params.get('recreate')
    if params.get('state') == 'repaired' and (bad or adopted) and check_mode:
        rep = Repairer(m, v, True, search, recreate, crypt)
        for r, s in zip(reports, snaps):
            if r.problems:
                changed |= rep.repair(tree, r, s)
        changed |= bool(adopted)
    elif params.get('state') == 'repaired' and (bad or adopted):
        with m.store.lock():
            tree, adopted = m.load()          # adopts virsh-made snapshots, redefines unsynced ones
            changed = bool(adopted) or bool(m.unsynced)
            for r in reports:
                if r.id in [s.id for s in m.unsynced]:
                    r.repairs.append("redefined libvirt's snapshot metadata of %s from the store" % r.name)
            if adopted and reports:
                reports[-1].repairs.append('adopted %s into the store' % ', '.join(adopted))
            for snap_id in bad:
                v.pending.pop(snap_id, None)
            changed |= bool(v.write_pending(tree))
            # again under the lock: another run may have changed them meanwhile
            v2 = Verifier(m, algorithm, throttle)
            again, _p = v2.verify(tree, [tree.snapshots[i] for i in bad if i in tree.snapshots])
            rep = Repairer(m, v2, False, search, recreate, crypt)
            for r in again:
                if r.problems:
                    changed |= rep.repair(tree, r, tree.snapshots[r.id])
            m.view.invalidate()
            tree, _a = m.load()
            v3 = Verifier(m, algorithm, throttle)
            final, problems = v3.verify(tree, [tree.snapshots[r.id] for r in again if r.id in tree.snapshots])
            before = dict((r.id, r) for r in again)
            reports_by_id = dict((r.id, r) for r in reports)
            for r in final:
                r.repairs, r.lost = reports_by_id[r.id].repairs + before[r.id].repairs, before[r.id].lost
                r.problems += [p for p in before[r.id].problems if p.kind == 'refused']
            final = dict((r.id, r) for r in final)
            reports = [final.get(r.id, r) for r in reports]
            changed |= bool(v3.write_pending(tree))
            problems = v3.domain_problems(tree, v3.libvirt_snapshots(), ())
    elif not check_mode and v.pending:
        with m.store.lock():
            tree, _a = m.load(write=False)
            changed = bool(v.write_pending(tree))
    return reports, problems, domain_stats(m, tree, problems), changed


def checksum_finisher(params, check_mode):
    """nova_snapshot's hook (run_plan's `finish`): after a snapshot was taken with `checksum`, record the
    checksums of what it froze, under the domain's lock, into the result's `checksums`."""
    def finish(manager, result):
        if params.get('state') == 'present' and params.get('checksum', 'none') != 'none' and result.get('changed') \
                and not check_mode and result.get('snapshot'):
            result['checksums'] = record_created(manager, result['snapshot'], params['checksum'])
    return finish


def record_created(manager, described, algorithm):
    """Record the checksums of the snapshot `described` (the record manager.run returned), under the
    domain's lock. Returns the entries."""
    if not algorithm or algorithm == 'none' or not described:
        return []
    with manager.store.lock():
        tree, _adopted = manager.load(write=False)
        snap = tree.snapshots.get(described['id'])
        return record_checksums(manager, tree, snap, algorithm) if snap else []


def record_taken(result, make_manager, params, check_mode):
    """nova_policy's hook: with `checksum`, record the checksums of the snapshots an enforce run took
    (`result['taken']`: [{domain, name, ...}]); returns `result` with `checksums` {domain/name: entries}."""
    algorithm = params.get('checksum', 'none')
    if algorithm == 'none' or check_mode or params.get('state') != 'enforced':
        return result
    out = {}
    for item in result.get('taken', []):
        m = make_manager(item['domain'])
        with m.store.lock():
            tree, _adopted = m.load(write=False)
            snap = tree.by_name(item['name'])
            if snap is not None:
                out['%s/%s' % (item['domain'], item['name'])] = record_checksums(m, tree, snap, algorithm)
    result['checksums'] = out
    return result
