# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Import a bundle (or a full bundle and its incrementals), an OVA, or disk images as a new VM.

Order of work: verify every checksum the manifests list (nothing is written before), check the
name, the pool and the free space, then write each disk under `.partial`, prove it equal to what
was exported (qemu-img compare), rename it, define the domain, and start it (from the RAM state
when the bundle has one). A failure removes every file and definition this run made.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import threading
import time
import uuid as uuidlib

from ansible_collections.nova.snapshots.plugins.module_utils.adapters import _import_xml, _ovf, _save_image
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._archive import Source, fsync_path, remove
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._domain_xml import DomainXML
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._image_copy import ImageCopy, spec_of
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._keyed_images import SECRET_ID, KeyedQemuImg, spec_name
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._keyfile import read_key_file
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._luks import encryption_element
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._secrets import Secrets, secret_uuid
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._store import Store
from ansible_collections.nova.snapshots.plugins.module_utils.operations._encryption import write_verifier
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._placement import (
    Pool,
    domain_exists,
    network_kind,
    remove_domain,
    restore,
)
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._xml import parse_xml
from ansible_collections.nova.snapshots.plugins.module_utils.model import _bundle as layout
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NovaError
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import validate_name

IMAGE_FORMATS = {'.qcow2': 'qcow2', '.vmdk': 'vmdk', '.raw': 'raw', '.img': 'raw'}
SLACK = 1024 * 1024


def free_bytes(path):
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class _Verifier(threading.Thread):
    """Every manifest of `sources` checked in the background; result() waits and raises a mismatch."""

    def __init__(self, importer, sources):
        super(_Verifier, self).__init__(name='nova-verify')
        self.daemon = True
        self.importer, self.sources = importer, sources
        self.checked, self.error = [], None

    def run(self):
        try:
            for s in self.sources:
                self.checked.extend(self.importer.verify(s))
        except Exception as e:      # handed to the main thread by result()
            self.error = e

    def result(self):
        self.join()
        if self.error is not None:
            raise self.error
        return self.checked


class Importer(object):
    def __init__(self, hypervisor, qemu_img):
        self.hv = hypervisor
        self.qemu_img = qemu_img
        self.img = ImageCopy(qemu_img)
        self.keyed, self.key, self.key_file = None, None, None     # an encrypted bundle's key

    # -- entry --------------------------------------------------------------------------------
    def run(self, check_mode, src, domain, storage_pool=None, dest_dir=None, start=False, network=None, force=False,
            key_file=None, storage_dir=None):
        validate_name(domain, 'domain')
        self.key_file = key_file
        self.storage_dir = storage_dir
        if not src:
            raise NovaError('src names nothing to import')
        if bool(storage_pool) == bool(dest_dir):
            raise NovaError('give exactly one of storage_pool and dest_dir')
        started = time.time()
        sources = [Source(p) for p in src]
        # Checksums are taken in a thread while the disks are written (both read the same files,
        # so the page cache serves the second reader); nothing is defined before they all match.
        verifier = _Verifier(self, sources)
        verifier.start()
        try:
            return self._run(check_mode, sources, verifier, started, domain, storage_pool, dest_dir, start,
                             network, force)
        except BaseException:
            verifier.join()
            if verifier.error is not None:
                raise verifier.error    # a damaged bundle is the cause of whatever failed after it
            raise

    def _run(self, check_mode, sources, verifier, started, domain, storage_pool, dest_dir, start, network, force):
        plan = self._plan(sources)
        self._open_keys(plan, sources)
        pool = Pool(self.hv, storage_pool) if storage_pool else None
        directory = pool.path if pool else os.path.abspath(dest_dir)
        if domain_exists(self.hv, domain) and not force:
            raise NovaError("domain '%s' already exists; set force to replace it" % domain, domain=domain)
        disks = []
        for dev, spec, _fmt in plan['disks']:
            path = os.path.join(directory, '%s-%s.qcow2' % (domain, dev))
            if os.path.lexists(path) and not force:
                raise NovaError('%s exists; set force to replace it' % path)
            disks.append(dict(device=dev, path=path, spec=spec))
        need = sum(self._measure(d) for d in disks) + SLACK
        if plan['memory'] and start:
            need += plan['memory'][0].size(plan['memory'][1])
        free = free_bytes(directory)
        if free < need:
            raise NovaError('not enough free space in %s for the import: %d MiB needed, %d MiB free; nothing was written'
                            % (directory, -(-need // 2 ** 20), free // 2 ** 20), needed_bytes=need, free_bytes=free)
        kind = network_kind(self.hv, network) if network else 'network'
        actions = ['verify the checksums of %s' % ', '.join(s.path for s in sources),
                   'write disks %s into %s' % (', '.join(d['path'] for d in disks), directory),
                   "define domain '%s'%s" % (domain, ' (replacing the existing one)' if domain_exists(self.hv, domain) else '')]
        if start:
            actions.append('restore its RAM from the bundle' if plan['memory'] else 'start it')
        result = dict(changed=True, domain=domain, actions=actions, verified=dict(checksums=[], disks=[]),
                      disks=[dict(device=d['device'], path=d['path'], format='qcow2') for d in disks], xml=None,
                      started=False, memory_restored=False, storage_pool=storage_pool, seconds=0.0)
        if check_mode:
            result['verified']['checksums'] = verifier.result()
            return result
        made = []
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o755)
                made.append(('dir', directory))
            for d in disks:
                if verifier.error is not None:
                    raise verifier.error
                self._write_disk(d, made)
                result['verified']['disks'].append(dict(device=d['device'], equal=True))
            result['verified']['checksums'] = verifier.result()
            if pool:
                pool.refresh()
                for entry, d in zip(result['disks'], disks):
                    entry['volume'] = pool.volume_name(d['path'])
            xml, save = self._definition(plan, domain, dict((d['device'], d['path']) for d in disks), network, kind,
                                         start, directory, made)
            if force:
                remove_domain(self.hv, domain)      # only now: everything new is written and verified
            if self.keyed and self.encrypted_devices(plan):
                uid = secret_uuid(parse_xml(xml).findtext('uuid'))
                Secrets(self.hv).ensure(uid, self.key, "nova.snapshots: LUKS key of domain '%s'" % domain)
                made.append(('secret', uid))
            self.hv.define(xml)
            made.append(('domain', domain))
            if self.keyed and self.encrypted_devices(plan) and self.storage_dir:
                result['key_verifier'] = self._record_key(domain, parse_xml(xml).findtext('uuid'), made)
            if start:
                if save:
                    restore(self.hv, save)
                    remove(save)
                    result['memory_restored'] = True
                else:
                    self.hv.domain(domain).start()
                result['started'] = True
        except BaseException:
            self._undo(made)
            raise
        result['xml'] = self.hv.domain(domain).xml(inactive=True)
        result['seconds'] = round(time.time() - started, 3)
        return result

    # -- verification -------------------------------------------------------------------------
    def verify(self, source):
        """Check `source` against its manifest; the names checked."""
        if source.kind == 'file':
            return []       # a plain disk image: there is nothing to check it against
        if source.has(layout.MANIFEST):
            expected = layout.parse_manifest(source.read(layout.MANIFEST), '%s: %s' % (source.path, layout.MANIFEST))
            others = [n for n in source.order if n != layout.MANIFEST]
        else:
            mfs = [n for n in source.order if n.endswith('.mf')]
            if not mfs:
                if any(n.endswith('.ovf') for n in source.order):
                    raise NovaError('%s has no manifest (.mf); refusing an OVA whose files cannot be verified'
                                    % source.path)
                raise NovaError('%s has no manifest (%s); refusing a bundle whose files cannot be verified'
                                % (source.path, layout.MANIFEST))
            expected = layout.parse_mf(source.read(mfs[0]), '%s: %s' % (source.path, mfs[0]))
            others = [n for n in source.order if n != mfs[0]]
        actual = {}
        for name in others:
            if name in expected:
                actual[name] = source.sha256(name)
            else:
                actual[name] = None
        layout.check_sums(expected, dict((k, v) for k, v in actual.items() if v is not None), source.path)
        extra = [n for n, v in actual.items() if v is None]
        if extra:
            raise NovaError('%s: file %s is not in the manifest' % (source.path, extra[0]), file=extra[0])
        return ['%s:%s' % (source.path, n) for n in sorted(expected)]

    # -- what to import -----------------------------------------------------------------------
    def _plan(self, sources):
        first = sources[0]
        if first.kind == 'file':
            if any(s.kind != 'file' for s in sources):
                raise NovaError('src mixes disk images with bundles or archives; import them separately')
            return self._plan_images(sources)
        if first.has(layout.BUNDLE_FILE):
            return self._plan_bundles(sources)
        if any(n.endswith('.ovf') for n in first.order):
            if len(sources) > 1:
                raise NovaError('an OVA is imported on its own; src names %d sources' % len(sources))
            return self._plan_ova(first)
        if first.has(layout.MANIFEST):
            return self._plan_disk_dir(sources)
        raise NovaError('%s is neither a bundle nor an OVA nor a directory of exported disks' % first.path)

    def _plan_bundles(self, sources):
        records = []
        for s in sources:
            if not s.has(layout.BUNDLE_FILE):
                raise NovaError('%s is not a bundle (no %s); a list of sources is a full bundle and its incrementals'
                                % (s.path, layout.BUNDLE_FILE))
            records.append(layout.parse_bundle_record(s.read(layout.BUNDLE_FILE), s.path))
        layout.order_chain(records)
        top, top_src = records[-1], sources[-1]
        disks = []
        for d in top['disks']:
            spec = None
            for rec, s in zip(records, sources):
                entry = [x for x in rec['disks'] if x['device'] == d['device']][0]
                if not s.has(entry['file']):
                    raise NovaError('%s: file %s is missing' % (s.path, entry['file']), file=entry['file'])
                spec = {'driver': 'qcow2', 'file': s.file_spec(entry['file']), 'backing': spec}
                if entry.get('encrypted'):
                    spec['encrypt'] = {'format': 'luks', 'key-secret': SECRET_ID}
            disks.append((d['device'], spec, 'qcow2'))
        memory = (top_src, top['memory']) if top.get('memory') else None
        config = top_src.read(top['config']) if top.get('config') else None
        return dict(kind='bundle', disks=disks, memory=memory, config=config, ovf=None)

    def _plan_ova(self, source):
        ovf_name = [n for n in source.order if n.endswith('.ovf')][0]
        if source.kind == 'tar' and source.order[0] != ovf_name:
            raise NovaError('%s: the OVF descriptor %s is not the first file of the archive' % (source.path, ovf_name))
        desc = _ovf.parse(source.read(ovf_name), source.path)
        disks = []
        dom_disks = []
        if desc['domain']:
            dom_disks = [d.target for d in DomainXML(desc['domain']).disks if d.device in (None, 'disk')]
        for i, d in enumerate(desc['disks']):
            name = layout.safe_member(d['file'], source.path)
            if not source.has(name):
                raise NovaError('%s: file %s the OVF names is missing' % (source.path, name), file=name)
            dev = dom_disks[i] if i < len(dom_disks) else 'vd' + 'abcdefghijklmnopqrstuvwxyz'[i]
            disks.append((dev, {'driver': 'vmdk', 'file': source.file_spec(name)}, 'vmdk'))
        return dict(kind='ova', disks=disks, memory=None, config=desc['domain'], ovf=desc)

    def _plan_disk_dir(self, sources):
        disks = []
        for s in sources:
            for n in s.order:
                m = re.match(r'^disk-([a-z]+)\.(qcow2|vmdk|raw)$', n)
                if m:
                    disks.append((m.group(1), {'driver': m.group(2), 'file': s.file_spec(n)}, m.group(2)))
        if not disks:
            raise NovaError('%s holds no exported disks (disk-<dev>.qcow2|vmdk|raw)' % sources[0].path)
        return dict(kind='disks', disks=disks, memory=None, config=None, ovf=None)

    def _plan_images(self, sources):
        disks = []
        for i, s in enumerate(sources):
            fmt = IMAGE_FORMATS.get(os.path.splitext(s.path)[1].lower())
            if fmt is None:
                raise NovaError('%s: cannot tell the format of a disk image from its name (use .qcow2, .vmdk, .raw '
                                'or .img); formats are never guessed' % s.path)
            disks.append(('vd' + 'abcdefghijklmnopqrstuvwxyz'[i], spec_of(s.path, fmt), fmt))
        return dict(kind='images', disks=disks, memory=None, config=None, ovf=None)

    # -- writing ------------------------------------------------------------------------------
    # -- encrypted bundles --------------------------------------------------------------------
    @staticmethod
    def encrypted_devices(plan):
        def luks(spec):
            return bool(spec) and ('encrypt' in spec or luks(spec.get('backing')))
        return [dev for dev, spec, _fmt in plan['disks'] if luks(spec)]

    def _open_keys(self, plan, sources):
        """An encrypted bundle's disks are imported LUKS-encrypted with the same key (never in clear):
        key_file is needed; a wrong key fails when the disks are measured, before anything is written
        (`qemu-img info` does not unlock a LUKS layer, `measure` does)."""
        devices = self.encrypted_devices(plan)
        if not devices:
            return
        if not self.key_file:
            raise NovaError('%s holds encrypted disks (%s): the import needs key_file (the key they were exported '
                            'with); nothing was written' % (sources[-1].path, ', '.join(devices)))
        self.key = read_key_file(self.key_file)
        self.keyed = KeyedQemuImg(self.qemu_img, self.key_file)

    def _measure(self, d):
        if self.keyed:
            return json.loads(self.keyed.run('measure', '-U', '--output=json', '-O', 'qcow2',
                                             spec_name(d['spec'])))['required'] + 4 * 1024 * 1024
        return self.img.measure_spec(d['spec'])

    def _copy(self, d, partial):
        """Write the disk `d` into `partial` and prove it equal; LUKS-encrypted when the bundle's is."""
        if self.keyed:
            encrypted = 'encrypt' in d['spec']
            self.keyed.convert(d['spec'], partial, encrypt=encrypted)
            written = spec_of(partial, 'qcow2')
            if encrypted:
                written['encrypt'] = {'format': 'luks', 'key-secret': SECRET_ID}
            return self.keyed.compare(d['spec'], written)
        self.img.convert_spec(d['spec'], partial)
        return self.img.same(d['spec'], spec_of(partial, 'qcow2'))

    def _write_disk(self, d, made):
        partial = d['path'] + '.partial'
        remove(partial)
        made.append(('file', partial))
        if not self._copy(d, partial):
            raise NovaError('the imported disk %s differs from the exported data; nothing was kept' % d['device'])
        fsync_path(partial)
        os.rename(partial, d['path'])
        made.append(('file', d['path']))

    def _definition(self, plan, domain, disks, network, kind, start, directory, made):
        """(domain XML, save image to restore from or None)."""
        new_uuid = str(uuidlib.uuid4())
        memory = plan['memory'] if start else None
        if plan['config']:
            root = parse_xml(plan['config'])
            _import_xml.retarget(root, domain, new_uuid, disks, keep_macs=bool(memory), network=network,
                                 network_kind=kind)
        else:
            ovf = plan['ovf'] or dict(vcpus=1, memory_mib=1024, nics=[])
            root = _import_xml.generic(domain, ovf['vcpus'], ovf['memory_mib'], sorted(disks.items()), ovf['nics'],
                                       network=network, network_kind=kind)
            _import_xml.retarget(root, domain, new_uuid, disks)
        encrypted = self.encrypted_devices(plan) if self.keyed else []
        for disk in DomainXML(root).disks:
            source = disk.root.find('source')
            if source is None or disk.target not in disks:
                continue
            for old in source.findall('encryption'):     # the exporting domain's secret
                source.remove(old)
            if disk.target in encrypted:
                encryption_element(source, secret_uuid(new_uuid))
        save = None
        if memory:
            source, name = memory
            save = os.path.join(directory, '%s.save' % domain)
            partial = save + '.partial'
            made.append(('file', partial))
            source.copy_to(name, partial)
            saved = parse_xml(_save_image.read_xml(partial))
            _import_xml.retarget(saved, domain, new_uuid, disks, keep_macs=True, network=network, network_kind=kind)
            _save_image.write_xml(partial, DomainXML(saved).to_string())
            os.rename(partial, save)
            made.append(('file', save))
        return DomainXML(root).to_string(), save

    def _record_key(self, domain, uuid, made):
        """The new domain's key verifier in its store (`encryption.json`, as its first encrypted
        snapshot would write it), so a later task given another key file is refused before anything
        changes. The path written."""
        store = Store(self.storage_dir, domain, owner=self.hv.qemu_owner(), uuid=uuid)
        path = os.path.join(store.root, 'encryption.json')
        made.append(('file', path))
        write_verifier(store, self.key, secret_uuid(uuid))
        return path

    def _undo(self, made):
        for what, name in reversed(made):
            try:
                if what == 'domain':
                    remove_domain(self.hv, name)
                elif what == 'secret':
                    Secrets(self.hv).remove(name)
                elif what == 'dir':
                    os.rmdir(name)      # only when empty: it was made for this import
                else:
                    remove(name)
            except (NovaError, OSError):
                pass    # best effort: the original error is the one reported
