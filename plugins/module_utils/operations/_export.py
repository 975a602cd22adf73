# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Export a snapshot: a portable bundle, an OVA, or its disks.

A snapshot's frozen images never change, so they are read as they are (qemu-img with
--force-share) while the VM runs on: it is never paused or touched. The store's lock is held for
the export, so no delete or merge rewrites a frozen image meanwhile. Everything is written under
`<dest>.partial` and renamed into place at the end; a failure removes what was written.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import json
import os
import re
import threading
import time

from ansible_collections.nova.snapshots.plugins.module_utils.adapters import _ovf
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._archive import (
    Source,
    copy_hashed,
    remove,
    replace,
    sha256_range,
    write_tar,
    write_text,
)
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._domain_xml import DomainXML
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._image_copy import ImageCopy
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._snapshot_xml import SnapshotXML
from ansible_collections.nova.snapshots.plugins.module_utils.model import _bundle as layout
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NovaError, SnapshotNotFound
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import OVERLAY_TYPES, iso_time
from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import export_crypt

SLACK = 1024 * 1024      # descriptions, manifests, tar headers


def free_bytes(path):
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class _Hasher(threading.Thread):
    """SHA-256 of a file in the background (hashlib releases the GIL); with copy_from, the file is
    first written from that one (private, fsynced) and hashed in the same pass."""

    def __init__(self, path, copy_from=None):
        super(_Hasher, self).__init__(name='nova-sha256')
        self.daemon = True
        self.path, self.copy_from, self.digest, self.error = path, copy_from, None, None
        self.start()

    def run(self):
        try:
            if self.copy_from:
                self.digest = copy_hashed(self.copy_from, self.path)
            else:
                self.digest = sha256_range(self.path)
        except Exception as e:      # handed to the caller by result()
            self.error = e

    def result(self):
        self.join()
        if self.error is not None:
            raise self.error
        return self.digest


class Exporter(object):
    def __init__(self, manager):
        self.m = manager
        self.img = ImageCopy(manager.qemu_img)
        self.keyed, self.encrypted = None, False     # an encrypted chain's KeyedQemuImg; LUKS disks in the bundle

    # -- entry --------------------------------------------------------------------------------
    def run(self, check_mode, name, dest, fmt='bundle', include_config=True, include_memory=False, compress=False,
            incremental_from=None, io_limit=None, force=False, compatibility=None, crypt=None):
        """`crypt`: the task's key_file, encrypt and decrypt (see _encryption.export_crypt)."""
        layout.check_format(fmt)
        hw_version = None
        if fmt == 'ova':
            hw_version = layout.hardware_version(compatibility or layout.DEFAULT_COMPATIBILITY)
        elif compatibility:
            raise NovaError('compatibility applies to format ova only (format is %s)' % fmt)
        if incremental_from and fmt != 'bundle':
            raise NovaError('incremental_from works with format bundle only (format is %s)' % fmt)
        if include_memory and fmt != 'bundle':
            raise NovaError('include_memory works with format bundle only; %s holds disks%s'
                            % (fmt, ' and the configuration' if fmt == 'ova' else ''))
        if io_limit is not None and io_limit <= 0:
            raise NovaError('io_limit must be a positive number of bytes per second')
        dest = os.path.abspath(dest)
        archive = fmt == 'ova' or (fmt == 'bundle' and dest.endswith('.tar'))
        with self.m.store.lock():
            tree, _adopted = self.m.load(write=False)
            snap = tree.by_name(name)
            if snap is None:
                raise SnapshotNotFound(self.m.domain.name, name)
            self.keyed, self.encrypted = export_crypt(self.m, snap, fmt, compress=compress,
                                                      incremental=bool(incremental_from),
                                                      include_memory=include_memory, **(crypt or {}))
            base = self._base(tree, snap, incremental_from) if incremental_from else None
            self._check_intact(snap, include_memory)
            same = self._existing(dest, fmt, snap, base, force)
            action = 'export %s snapshot %s of %s as %s to %s%s' % (
                'an incremental (since %s) of' % base.name if base else '', snap.name, self.m.domain.name, fmt,
                dest, ' (replacing it)' if os.path.lexists(dest) else '')
            action = re.sub(' +', ' ', action)
            result = dict(changed=False, dest=dest, format=fmt, snapshot=snap.name, files=[], bytes_written=0,
                          seconds=0.0, actions=[], changed_bytes=None, bundle_id=None)
            if same is not None:
                result.update(same)
                return result
            result.update(changed=True, actions=[action])
            if check_mode:
                return result
            started = time.time()
            stage = dest + ('.partial.d' if archive else '.partial')
            partial = dest + '.partial'
            remove(stage)
            remove(partial)
            try:
                os.makedirs(stage, 0o700)
                written = self._write(tree, snap, base, stage, fmt, archive, dest, include_config, include_memory,
                                      compress, io_limit, hw_version)
                if archive:
                    write_tar(partial, stage, written['order'])
                    remove(stage)
                    replace(partial, dest, force)
                else:
                    os.chmod(stage, 0o755)
                    replace(stage, dest, force)
            except BaseException:
                remove(stage)
                remove(partial)
                raise
            result.update(written['result'])
            result['bytes_written'] = os.path.getsize(dest) if archive else sum(f['size'] for f in result['files'])
            result['seconds'] = round(time.time() - started, 3)
            return result

    # -- checks -------------------------------------------------------------------------------
    def _base(self, tree, snap, base_name):
        base = tree.by_name(base_name)
        if base is None:
            raise SnapshotNotFound(self.m.domain.name, base_name)
        if base.id == snap.id or base.id not in tree.path_to_root(snap.id):
            raise NovaError("incremental_from: snapshot '%s' is not on the path from '%s' to its root (%s)"
                            % (base_name, snap.name, ' <- '.join(tree.snapshots[i].name for i in tree.path_to_root(snap.id))))
        if snap.snapshot_type not in OVERLAY_TYPES or base.snapshot_type not in OVERLAY_TYPES:
            raise NovaError('incremental exports need external snapshots (frozen images); %s is %s'
                            % ((snap.name, snap.snapshot_type) if snap.snapshot_type not in OVERLAY_TYPES
                               else (base.name, base.snapshot_type)))
        for d in snap.disk_files:
            bd = base.disk(d.device)
            chain = [os.path.realpath(p) for p in self.m.view.chain(d.file_path)]
            if bd is None or os.path.realpath(bd.file_path) not in chain:
                raise NovaError("incremental_from: disk %s of snapshot '%s' does not build on snapshot '%s'"
                                % (d.device, snap.name, base.name))
        return base

    def _check_intact(self, snap, include_memory):
        for d in snap.disk_files:
            if not os.path.exists(d.file_path):
                raise NovaError("snapshot '%s' is damaged: its image %s for %s is missing" % (snap.name, d.file_path, d.device))
        if include_memory:
            if snap.snapshot_type == 'internal':
                raise NovaError("snapshot '%s' is internal: its RAM lives inside the qcow2 file and cannot be "
                                "exported; export it without include_memory" % snap.name)
            if not snap.memory_file:
                raise NovaError("snapshot '%s' has no memory file (a %s snapshot taken while the VM was %s); "
                                "export it without include_memory" % (snap.name, snap.snapshot_type, snap.vm_state))
            if not os.path.exists(snap.memory_file):
                raise NovaError("snapshot '%s' is damaged: its memory file %s is missing" % (snap.name, snap.memory_file))

    def _existing(self, dest, fmt, snap, base, force):
        """None when the export is to be written; the result when `dest` already holds it."""
        if not os.path.lexists(dest) or force:
            return None
        if fmt == 'bundle':
            try:
                src = Source(dest)
                record = layout.parse_bundle_record(src.read(layout.BUNDLE_FILE), dest) if src.has(layout.BUNDLE_FILE) else None
            except NovaError:
                record = None
            if record is None:
                raise NovaError('%s exists and is not a bundle; set force to replace it' % dest)
            want_base = base.id if base else None
            if record['snapshot']['id'] != snap.id or (record.get('extends') or {}).get('snapshot_id') != want_base:
                raise NovaError("%s exists and holds an export of snapshot '%s'%s; set force to replace it"
                                % (dest, record['snapshot']['name'], ' (incremental)' if record.get('extends') else ''))
            sums = layout.parse_manifest(src.read(layout.MANIFEST)) if src.has(layout.MANIFEST) else {}
            files = [dict(name=n, size=src.size(n), sha256=sums.get(n)) for n in src.order]
            return dict(files=files, bundle_id=record['id'], changed_bytes=record.get('changed_bytes'))
        return dict(files=[], actions=['%s exists; left as it is (set force to export again)' % dest])

    def _check_space(self, dest, needs, archive):
        need = sum(needs) + SLACK + (max(needs) if archive and needs else 0)
        free = free_bytes(os.path.dirname(dest))
        if free < need:
            raise NovaError('not enough free space in %s for the export: %d MiB needed, %d MiB free; nothing was written'
                            % (os.path.dirname(dest), -(-need // 2 ** 20), free // 2 ** 20),
                            needed_bytes=need, free_bytes=free)

    # -- writing ------------------------------------------------------------------------------
    def _source(self, snap, disk):
        return self.img.snapshot_source(disk, snap.name if snap.snapshot_type == 'internal' else None)

    def _domain_root(self, snap):
        saved = self.m.store.snapshot_xml(snap.id)
        if saved:
            sx = SnapshotXML(saved)
            if sx.domain is not None:
                return sx.domain
        return DomainXML(self.m.domain.xml(inactive=True)).root

    def _write(self, tree, snap, base, stage, fmt, archive, dest, include_config, include_memory, compress,
               io_limit, hw_version):
        out_fmt = {'bundle': 'qcow2', 'ova': 'vmdk'}.get(fmt, fmt)
        if self.keyed:
            needs = [self.keyed.measure(d.file_path, d.format) for d in snap.disk_files]
        else:
            needs = [self.img.measure(self._source(snap, d), 'raw' if out_fmt == 'raw' else 'qcow2')
                     for d in snap.disk_files]
        if include_memory:
            needs.append(os.path.getsize(snap.memory_file))
        self._check_space(dest, needs, archive)
        domain_root = self._domain_root(snap)
        if fmt == 'bundle':
            return self._write_bundle(tree, snap, base, stage, include_config, include_memory, compress, io_limit,
                                      domain_root)
        if fmt == 'ova':
            return self._write_ova(snap, stage, dest, io_limit, hw_version, domain_root, include_config)
        files = []
        for d in snap.disk_files:
            fname = layout.disk_file(d.device, layout.DISK_EXT[fmt])
            self.img.convert(self._source(snap, d), os.path.join(stage, fname), out_fmt=out_fmt,
                             compress=compress, rate=io_limit,
                             options=['subformat=streamOptimized'] if fmt == 'vmdk' else None)
            files.append(fname)
        sums = self._sums(stage, files)
        write_text(os.path.join(stage, layout.MANIFEST), layout.render_manifest(sums))
        return dict(order=files + [layout.MANIFEST], result=dict(files=self._listing(stage, files + [layout.MANIFEST], sums)))

    def _sums(self, stage, names, known=None):
        """SHA-256 of each file; `known` ({name: _Hasher}) were started earlier and are only waited for."""
        known = known or {}
        return dict((n, known[n].result() if n in known else sha256_range(os.path.join(stage, n))) for n in names)

    def _listing(self, stage, names, sums):
        return [dict(name=n, size=os.path.getsize(os.path.join(stage, n)), sha256=sums.get(n)) for n in names]

    def _write_bundle(self, *args):
        hashing = {}
        try:
            return self._bundle_files(hashing, *args)
        except BaseException:
            for h in hashing.values():
                h.join()            # before the caller removes what they write into
            raise

    def _bundle_files(self, hashing, tree, snap, base, stage, include_config, include_memory, compress, io_limit,
                      domain_root):
        bundle_id = '%s-%s' % (time.strftime('%Y%m%dT%H%M%S', time.gmtime()), binascii.hexlify(os.urandom(3)).decode())
        disks, files, changed = [], [], 0
        for d in snap.disk_files:
            fname = layout.disk_file(d.device)
            path = os.path.join(stage, fname)
            entry = dict(device=d.device, file=fname, format='qcow2', backing=None)
            if self.keyed:         # an encrypted chain: LUKS in the bundle too, unless decrypt was asked for
                self.keyed.convert(self.keyed.spec(d.file_path, d.format), path, encrypt=self.encrypted, rate=io_limit)
                entry['encrypted'] = self.encrypted
            elif base is None:
                self.img.convert(self._source(snap, d), path, compress=compress, rate=io_limit)
            else:
                bd = base.disk(d.device)
                self.img.diff_layer(d.file_path, d.format, bd.file_path, bd.format, path)
                if compress or io_limit:
                    tmp = path + '.tmp'
                    self.img.convert(['-f', 'qcow2', path], tmp, compress=compress, rate=io_limit,
                                     backing=(bd.file_path, bd.format))
                    os.rename(tmp, path)
                changed += self.img.own_bytes(path)
                self.img.set_backing_name(path, fname)
                entry['backing'] = fname
            entry['virtual_size'] = self.img.info(path, 'qcow2')['virtual-size']
            disks.append(entry)
            files.append(fname)
            hashing[fname] = _Hasher(path)      # hashed while the next disk is copied
        if include_config:
            write_text(os.path.join(stage, layout.DOMAIN_FILE),
                       DomainXML(domain_root).to_string() + '\n')
            files.append(layout.DOMAIN_FILE)
        write_text(os.path.join(stage, layout.RECORD_FILE),
                   json.dumps(self.m.describe(tree, snap), indent=1, sort_keys=True) + '\n')
        files.append(layout.RECORD_FILE)
        if include_memory:
            target = os.path.join(stage, layout.MEMORY_FILE)
            hashing[layout.MEMORY_FILE] = _Hasher(target, copy_from=snap.memory_file)
            files.append(layout.MEMORY_FILE)
        extends = dict(snapshot_id=base.id, snapshot_name=base.name) if base else None
        record = layout.bundle_record(bundle_id, self.m.domain.name, snap, disks, iso_time(time.time()),
                                      config=include_config, memory=include_memory, extends=extends)
        if base is not None:
            record['changed_bytes'] = changed
        write_text(os.path.join(stage, layout.BUNDLE_FILE), json.dumps(record, indent=1, sort_keys=True) + '\n')
        files.insert(0, layout.BUNDLE_FILE)
        sums = self._sums(stage, files, hashing)
        write_text(os.path.join(stage, layout.MANIFEST), layout.render_manifest(sums))
        order = files + [layout.MANIFEST]
        return dict(order=order, result=dict(files=self._listing(stage, order, sums), bundle_id=bundle_id,
                                             changed_bytes=changed if base is not None else None))

    def _write_ova(self, snap, stage, dest, io_limit, hw_version, domain_root, include_config):
        stem = re.sub(r'[^A-Za-z0-9._+-]', '_', os.path.basename(dest))
        stem = re.sub(r'\.ova$', '', stem) or 'vm'
        vm_name = DomainXML(domain_root).name or self.m.domain.name
        disks, names = [], []
        for d in snap.disk_files:
            fname = '%s-%s.vmdk' % (stem, d.device)
            path = os.path.join(stage, fname)
            self.img.convert(self._source(snap, d), path, out_fmt='vmdk', rate=io_limit,
                             options=['subformat=streamOptimized', 'adapter_type=lsilogic'])
            disks.append(dict(file=fname, size=os.path.getsize(path), device=d.device,
                              capacity=self.img.info(path, 'vmdk')['virtual-size']))
            names.append(fname)
        facts = _ovf.domain_facts(domain_root)
        ovf_name = stem + '.ovf'
        text = _ovf.build(vm_name, facts, disks, hw_version,
                          DomainXML(domain_root).to_string() if include_config else None)
        write_text(os.path.join(stage, ovf_name), text)
        sums = self._sums(stage, [ovf_name] + names)
        mf_name = stem + '.mf'
        write_text(os.path.join(stage, mf_name), layout.render_mf(sums))
        order = [ovf_name, mf_name] + names
        listing = self._listing(stage, order, sums)
        return dict(order=order, result=dict(files=listing))
