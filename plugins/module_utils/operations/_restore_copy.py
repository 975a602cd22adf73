# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Repair of a corrupt snapshot file from a verified copy, found under the task's `search_paths`.

Two kinds of copy serve:

- the same file, byte for byte (a copy on an archive tier, a backup of the store): found by the
  checksum recorded when the snapshot was taken, copied back;
- a full export bundle of the same snapshot (nova_snapshot_export): its manifest is checked with
  SHA-256 first; a disk's layer is rebuilt as exactly the clusters where the bundle's disk differs
  from the layer's own backing image, proven equal to the bundle with `qemu-img compare`. Its bytes
  differ from the lost file's, but the guest sees the same disk through it, so the snapshots built
  on it (its children) show what they showed before.

Either way the new file is written beside the old one under a temporary name and renamed over it
only once proven, so a crash leaves the corrupt file or the repaired one, never a half-written one.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._checksum import file_digest
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._chains import real
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import install
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._image_copy import ImageCopy
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._luks import image_encrypted
from ansible_collections.nova.snapshots.plugins.module_utils.model import _bundle as layout
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NovaError


def find_by_checksum(search_paths, entry, throttle=None, skip=()):
    """The first regular file under `search_paths` whose size and checksum are the recorded ones."""
    skip = set(real(p) for p in skip)
    for root in search_paths:
        for dirpath, _dirs, files in os.walk(root):
            for name in sorted(files):
                path = os.path.join(dirpath, name)
                if os.path.islink(path) or not os.path.isfile(path) or real(path) in skip:
                    continue
                if os.path.getsize(path) != entry['size']:
                    continue
                digest, _n = file_digest(path, entry['algorithm'], throttle)
                if digest == entry['digest']:
                    return path
    return None


def find_bundles(search_paths, snapshot_id):
    """Directories under `search_paths` holding a full export bundle of snapshot `snapshot_id`."""
    found = []
    for root in search_paths:
        for dirpath, _dirs, files in os.walk(root):
            if layout.BUNDLE_FILE not in files or layout.MANIFEST not in files:
                continue
            try:
                with open(os.path.join(dirpath, layout.BUNDLE_FILE)) as f:
                    record = layout.parse_bundle_record(f.read(), dirpath)
            except (IOError, OSError, NovaError):
                continue
            if record.get('kind') == 'full' and (record.get('snapshot') or {}).get('id') == snapshot_id:
                found.append((dirpath, record))
    return sorted(found)


class CopyRestorer(object):
    """Restores one corrupt file of a snapshot from a verified copy; notes each step in the report."""

    def __init__(self, manager, search_paths, check_mode, throttle=None):
        self.m = manager
        self.search_paths = search_paths
        self.check_mode = check_mode
        self.throttle = throttle
        self.copy = ImageCopy(manager.qemu_img)

    def restore(self, snap, path, entry, note):
        """True when `path` was (or in check mode would be) restored; note(text) says what was done."""
        if real(path) in self.m.open_images():
            note('not restore %s from a copy: the running VM reads it (stop the VM, then repair)' % path)
            return False
        same = find_by_checksum(self.search_paths, entry, self.throttle, skip=[path]) if entry else None
        if same is not None:
            note('restore %s from the identical copy %s (found by its recorded %s checksum)'
                 % (path, same, entry['algorithm']))
            if not self.check_mode:
                self._install(path, lambda partial: self.m.qemu_img.copy_sparse(same, partial), entry)
            return True
        disk = [d for d in snap.disk_files if d.file_path == path]
        if not disk:
            return False
        if self._encrypted(path, snap):
            note('not rebuild %s from an export bundle: it is a LUKS layer, which a rebuild from a bundle does '
                 'not write yet (an identical copy under search_paths restores it)' % path)
            return False
        for bundle_dir, record in find_bundles(self.search_paths, snap.id):
            source = [x for x in record.get('disks') or [] if x.get('device') == disk[0].device]
            if not source:
                continue
            why = self._bundle_unusable(bundle_dir, source[0]['file'])
            if why:
                note('not restore %s from export bundle %s: %s' % (path, bundle_dir, why))
                continue
            note('rebuild %s from export bundle %s (the clusters where its %s differs from %s, proven equal '
                 'to the bundle with qemu-img compare)' % (path, bundle_dir, source[0]['file'],
                                                           self._backing(disk[0]) or 'nothing'))
            if not self.check_mode:
                self._rebuild(path, disk[0], os.path.join(bundle_dir, source[0]['file']))
            return True
        return False

    def _encrypted(self, path, snap):
        """Whether the layer `path` is LUKS (its header may be damaged: then the snapshot's flag says)."""
        try:
            return image_encrypted(self.m.qemu_img.info(path, fmt='qcow2'))
        except NovaError:
            return bool(getattr(snap, 'encrypted', False))

    def _bundle_unusable(self, bundle_dir, name):
        """Why the bundle's disk file cannot be trusted (its SHA256SUMS line), or None."""
        try:
            with open(os.path.join(bundle_dir, layout.MANIFEST)) as f:
                sums = layout.parse_manifest(f.read(), os.path.join(bundle_dir, layout.MANIFEST))
        except (IOError, OSError, NovaError) as e:
            return 'its manifest cannot be read (%s)' % getattr(e, 'msg', e)
        if name not in sums:
            return 'its manifest does not list %s' % name
        digest, _n = file_digest(os.path.join(bundle_dir, name), 'sha256', self.throttle)
        if digest != sums[name]:
            return '%s does not match its manifest (sha256 %s, listed %s)' % (name, digest, sums[name])
        return None

    def _backing(self, disk):
        """The image the layer sits on: as recorded, else as its (perhaps damaged) header says."""
        if disk.backing_file or disk.format != 'qcow2':
            return disk.backing_file
        try:
            return self.m.qemu_img.info(disk.file_path, fmt='qcow2').backing_file
        except NovaError:
            return None

    def _rebuild(self, path, disk, bundle_disk):
        backing = self._backing(disk)

        def write(partial):
            if backing:
                fmt = self.m.qemu_img.info(backing).raw.get('format', 'raw')
                self.copy.diff_layer(bundle_disk, 'qcow2', backing, fmt, partial)
            else:
                self.copy.convert(['-f', 'qcow2', bundle_disk], partial, out_fmt=disk.format)
            if not self.m.qemu_img.compare(bundle_disk, partial):
                raise NovaError('the copy of %s rebuilt from %s differs from it (qemu-img compare); %s was not '
                                'changed' % (path, bundle_disk, path))
        self._install(path, write, None)

    def _install(self, path, write, entry):
        partial = os.path.join(os.path.dirname(path), '.%s.restore-partial' % os.path.basename(path))
        if os.path.exists(partial):
            os.unlink(partial)          # left by a run that was killed: start over
        try:
            write(partial)
            if entry is not None:
                digest, _n = file_digest(partial, entry['algorithm'], self.throttle)
                if digest != entry['digest']:
                    raise NovaError('the copy of %s changed while it was copied (%s %s, recorded %s); %s was not '
                                    'changed' % (path, entry['algorithm'], digest, entry['digest'], path))
            st = os.stat(path)
            os.chmod(partial, st.st_mode & 0o7777)
            os.chown(partial, st.st_uid, st.st_gid)
            install(partial, path)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        self.m.view.invalidate()
