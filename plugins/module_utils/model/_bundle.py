# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""What an export looks like on disk, without touching a disk: names, manifests, the bundle record.

A bundle (a directory, or one tar of it) holds:

    bundle.json      what the bundle is: its id, the snapshot, its disks, the bundle it extends
    disk-<dev>.qcow2 each disk flattened (full) or only the clusters that differ (incremental)
    domain.xml       the domain definition at the snapshot (include_config)
    snapshot.json    the snapshot's record
    memory.save      the RAM state (include_memory)
    SHA256SUMS       one line per other file, in sha256sum's own format (`sha256sum -c SHA256SUMS`)
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import re

from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NovaError

BUNDLE_VERSION = 1
BUNDLE_FILE = 'bundle.json'
MANIFEST = 'SHA256SUMS'
DOMAIN_FILE = 'domain.xml'
RECORD_FILE = 'snapshot.json'
MEMORY_FILE = 'memory.save'
FORMATS = ('bundle', 'ova', 'vmdk', 'qcow2', 'raw')
DISK_EXT = {'qcow2': 'qcow2', 'vmdk': 'vmdk', 'raw': 'raw'}

# VMware virtual hardware versions (vmx-NN) by product. Sources: Broadcom's vSphere Automation API,
# Hardware.Version: VMX_17 "first supported in ESXi 7.0.0-0", VMX_20 "first supported in ESXi 8.0";
# VMX_16 is Workstation 15.0, Workstation 16 brought VMX_18 (VMware KB 1003746).
COMPATIBILITY = {
    'vmware-workstation-16': 'vmx-18',
    'esxi-7': 'vmx-17',
    'esxi-8': 'vmx-20',
}
DEFAULT_COMPATIBILITY = 'esxi-7'

_SAFE_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$')
_SUM_LINE = re.compile(r'^([0-9a-fA-F]{64}) [ *](.+)$')
_MF_LINE = re.compile(r'^SHA(1|256)\s*\((.+)\)\s*=\s*([0-9a-fA-F]+)$')


class BundleInvalid(NovaError):
    pass


def hardware_version(compatibility):
    if compatibility not in COMPATIBILITY:
        raise NovaError("unknown compatibility %r; known: %s" % (compatibility, ', '.join(sorted(COMPATIBILITY))),
                        compatibility=compatibility)
    return COMPATIBILITY[compatibility]


def check_format(fmt):
    if fmt not in FORMATS:
        raise NovaError("unknown export format %r; known: %s" % (fmt, ', '.join(FORMATS)), format=fmt)
    return fmt


def disk_file(device, ext='qcow2'):
    return 'disk-%s.%s' % (device, ext)


def safe_member(name, where):
    """A file name from a manifest or an archive: a plain name in the bundle, never a path out of it."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or '..' in name:
        raise BundleInvalid('%s names a file %r that is not a plain file name; refusing it' % (where, name))
    return name


def render_manifest(sums):
    """sums: {name: sha256 hex} -> the text `sha256sum` writes (two spaces: text mode)."""
    return ''.join('%s  %s\n' % (sums[n], n) for n in sorted(sums))


def parse_manifest(text, where=MANIFEST):
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _SUM_LINE.match(line)
        if not m:
            raise BundleInvalid('%s line %d is not a sha256sum line: %r' % (where, number, line[:80]))
        sums[safe_member(m.group(2), where)] = m.group(1).lower()
    if not sums:
        raise BundleInvalid('%s lists no files' % where)
    return sums


def render_mf(sums):
    """The OVF manifest (.mf): `SHA256(name)= hex` per file (DSP0243 section 5.1)."""
    return ''.join('SHA256(%s)= %s\n' % (n, sums[n]) for n in sorted(sums))


def parse_mf(text, where):
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _MF_LINE.match(line.strip())
        if not m:
            raise BundleInvalid('%s line %d is not a manifest line: %r' % (where, number, line[:80]))
        if m.group(1) != '256':
            raise BundleInvalid('%s uses SHA1 for %s; only SHA256 manifests are accepted' % (where, m.group(2)))
        sums[safe_member(m.group(2), where)] = m.group(3).lower()
    return sums


def check_sums(expected, actual, where):
    """Every file the manifest lists is there with its checksum, and nothing else is there."""
    for name in sorted(expected):
        if name not in actual:
            raise BundleInvalid('%s: file %s listed in the manifest is missing' % (where, name), file=name)
        if actual[name] != expected[name]:
            raise BundleInvalid('%s: checksum mismatch for %s (manifest %s, file %s)'
                                % (where, name, expected[name], actual[name]), file=name)
    extra = sorted(set(actual) - set(expected))
    if extra:
        raise BundleInvalid('%s: file %s is not in the manifest' % (where, extra[0]), file=extra[0])


def bundle_record(bundle_id, domain, snapshot, disks, created_at, config=True, memory=False, extends=None):
    """bundle.json as a dict. disks: [{device, file, virtual_size, backing}], backing naming the
    file of the extended bundle an incremental disk sits on."""
    return dict(nova_bundle=BUNDLE_VERSION, id=bundle_id, kind='incremental' if extends else 'full',
                domain=domain, snapshot=dict(id=snapshot.id, name=snapshot.name, type=snapshot.snapshot_type),
                created_at=created_at, disks=disks,
                config=DOMAIN_FILE if config else None, record=RECORD_FILE,
                memory=MEMORY_FILE if memory else None, extends=extends)


def parse_bundle_record(text, where):
    try:
        data = json.loads(text)
    except ValueError as e:
        raise BundleInvalid('%s: %s is not valid JSON (%s)' % (where, BUNDLE_FILE, e))
    if not isinstance(data, dict) or data.get('nova_bundle') != BUNDLE_VERSION:
        raise BundleInvalid('%s is not a nova.snapshots bundle (version %r)' % (where, BUNDLE_VERSION))
    for disk in data.get('disks') or []:
        safe_member(disk.get('file'), where)
    for key in ('config', 'memory', 'record'):
        if data.get(key):
            safe_member(data[key], where)
    return data


def order_chain(bundles, where='src'):
    """bundles: [record] given as `src` -> the same, checked: one full bundle, then incrementals each
    extending the one before."""
    if not bundles:
        raise BundleInvalid('%s names no bundle' % where)
    if bundles[0].get('kind') != 'full':
        raise BundleInvalid("%s must start with a full bundle; bundle %s is an incremental on snapshot %s"
                            % (where, bundles[0].get('id'), (bundles[0].get('extends') or {}).get('snapshot_name')))
    for prev, cur in zip(bundles, bundles[1:]):
        ext = cur.get('extends') or {}
        if cur.get('kind') != 'incremental' or ext.get('snapshot_id') != prev['snapshot'].get('id'):
            raise BundleInvalid("bundle %s (snapshot %s) does not extend bundle %s (snapshot %s); give a full bundle "
                                "followed by its incrementals in order"
                                % (cur.get('id'), cur['snapshot'].get('name'), prev.get('id'), prev['snapshot'].get('name')))
        if sorted(d['device'] for d in cur['disks']) != sorted(d['device'] for d in prev['disks']):
            raise BundleInvalid('bundle %s has other disks than the bundle it extends' % cur.get('id'))
    return bundles
