# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Encrypted snapshots: the key of a domain, its libvirt secret, and memory files that never hit
the disk in clear.

One key per domain. Its verifier (scrypt of the key with a random salt, never the key) is kept in
`<store>/encryption.json`, so a wrong key file is refused before anything changes. Disks: LUKS
qcow2 overlays (adapters/_luks.py) opened by QEMU through the domain's libvirt secret
(adapters/_secrets.py). RAM: libvirt writes the save image into a private tmpfs directory
(/dev/shm, 0700), which is sealed into the store (adapters/_memory_codec.py) and removed; a revert
decrypts it into such a directory and removes it as soon as QEMU has read it.
Memory compression (zstd) is the same transform without the key, and composes with it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import hashlib
import json
import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters import _luks, _memory_codec, _scratch
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._save_image import MAGIC as SAVE_COMPLETE
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._keyed_images import KeyedQemuImg
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import MEMORY_MARGIN, install, require_free
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._keyfile import key_verifier, read_key_file
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._secrets import Secrets, secret_uuid
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused

TMPFS = '/dev/shm'
MEMORY_COMPRESSIONS = ('none', 'zstd')

# Options of the modules that work on encrypted chains (documented by the nova.snapshots.encryption fragment).
KEY_SPEC = dict(key_file=dict(type='path', no_log=False))
ENCRYPTION_SPEC = dict(KEY_SPEC, encrypt=dict(type='bool', default=False), luks_iter_time=dict(type='int'),
                       memory_compression=dict(type='str', choices=list(MEMORY_COMPRESSIONS), default='none'))
# nova_policy's state=enforced: passed to the snapshots it takes (the nova.snapshots.encryption.policy fragment)
POLICY_SPEC = dict((k, v) for k, v in ENCRYPTION_SPEC.items() if k != 'luks_iter_time')   # the domain's own cost
# nova_snapshot_export (documented by the nova.snapshots.encryption and nova.snapshots.encryption.export fragments)
EXPORT_SPEC = dict(KEY_SPEC, encrypt=dict(type='bool', default=False), decrypt=dict(type='bool', default=False))


class WrongDomainKey(Refused):
    """The key file is not the key the domain's encrypted snapshots were made with."""


class Crypt(object):
    """The key of domain `m.domain` from `key_file`, checked against the store's verifier."""

    def __init__(self, m, key_file, iter_time=None):
        self.m = m
        self.key_file = key_file
        self.key = read_key_file(key_file)
        self.secret_uuid = secret_uuid(m.domain.uuid)
        self.requested_iter_time = check_iter_time(iter_time)
        self.check()

    @property
    def iter_time(self):
        """Milliseconds of PBKDF2 per key slot of the LUKS layers this task writes: the task's
        luks_iter_time, else the one the domain's record keeps (set by an earlier task), else ITER_TIME_MS."""
        if self.requested_iter_time is not None:
            return self.requested_iter_time
        return recorded_iter_time(self.record())

    def keyed(self, qemu_img, remember_maps=False):
        """The KeyedQemuImg opening the domain's LUKS layers with this key over `qemu_img`."""
        return KeyedQemuImg(qemu_img, self.key_file, remember_maps=remember_maps, iter_time=self.iter_time)

    @property
    def record_path(self):
        return os.path.join(self.m.store.root, 'encryption.json')

    def record(self):
        try:
            with open(self.record_path) as f:
                return json.load(f)
        except (IOError, OSError, ValueError):
            return None

    def check(self):
        rec = self.record()
        if rec and key_verifier(self.key, binascii.unhexlify(rec['salt'])) != rec['verifier']:
            raise WrongDomainKey("key_file %s is not the key of domain '%s''s encrypted snapshots (wrong key); "
                                 "nothing was changed" % (self.key_file, self.m.domain.name), key_file=self.key_file)

    def activate(self):
        """Remember the key's verifier (first use) and give libvirt the domain's secret."""
        rec = self.record()
        if rec is None:
            write_verifier(self.m.store, self.key, self.secret_uuid, self.iter_time)
        elif recorded_iter_time(rec) != self.iter_time:
            # a task's luks_iter_time sets the cost of the domain's later layers too
            self.m.store.replace(self.record_path, json.dumps(dict(rec, luks_iter_time=self.iter_time)))
        Secrets(self.m.hypervisor).ensure(self.secret_uuid, self.key,
                                          "nova.snapshots: LUKS key of domain '%s'" % self.m.domain.name)

    # -- disks --------------------------------------------------------------------------------
    def encrypt_source(self, source):
        _luks.encryption_element(source, self.secret_uuid)

    def create_overlay(self, path, backing, backing_format):
        size = self.m.qemu_img.info(backing, backing_format).virtual_size
        _luks.create_overlay(self.m.qemu_img, path, backing, backing_format, size, self.key_file, self.iter_time)

    def describe_disk(self, disk):
        """Make the DiskXML `disk` (pointed at a new overlay) carry its chain's encryption."""
        _luks.describe_chain(disk, self.m.qemu_img.chain(disk.source_file, 'qcow2'), self.secret_uuid)


def write_verifier(store, key, uid, iter_time=_luks.ITER_TIME_MS):
    """`<store>/encryption.json`: the key's verifier (scrypt of it with a random salt, never the key),
    against which every later task's key_file is checked, and the PBKDF2 cost of the domain's LUKS layers."""
    salt = os.urandom(16)
    store.make_dir(store.root)
    store.replace(os.path.join(store.root, 'encryption.json'), json.dumps(dict(
        salt=binascii.hexlify(salt).decode(), verifier=key_verifier(key, salt),
        secret_uuid=uid, cipher='aes-256-gcm', kdf='scrypt', luks_iter_time=iter_time)))


def recorded_iter_time(record):
    """The LUKS cost a domain's encryption record keeps (records older than luks_iter_time: the default)."""
    return (record or {}).get('luks_iter_time', _luks.ITER_TIME_MS)


def check_iter_time(value):
    """luks_iter_time as given (None: not given), refused outside what QEMU's LUKS key slots take well."""
    if value is not None and not _luks.MIN_ITER_TIME_MS <= value <= _luks.MAX_ITER_TIME_MS:
        raise Refused('luks_iter_time must be between %d and %d milliseconds, not %d; nothing was changed'
                      % (_luks.MIN_ITER_TIME_MS, _luks.MAX_ITER_TIME_MS, value))
    return value


def crypt_for(m, params, tree=None, what='this task', dom=None):
    """The Crypt of the task's key_file, or None without one; refused when the domain's chain is
    encrypted (its snapshots in `tree`, or the disks of `dom`) and no key_file was given."""
    if params.get('key_file'):
        return Crypt(m, params['key_file'], params.get('luks_iter_time'))
    encrypted = encrypted_parts(m, tree, dom)
    if encrypted:
        raise Refused("domain '%s' has encrypted %s: %s needs key_file (the key the snapshots were encrypted "
                      "with); nothing was changed" % (m.domain.name, ', '.join(encrypted), what))
    return None


def keyed_images(m, params, tree, what):
    """The KeyedQemuImg with which a task that reads the domain's layers (qemu-img check, map,
    convert) opens its LUKS layers: from key_file, checked against the domain's key first (a wrong key
    is refused before anything is read); None for a domain with nothing encrypted and no key_file;
    refused for an encrypted one without key_file."""
    crypt = crypt_for(m, params, tree, what, m.domain_xml())
    return crypt.keyed(m.qemu_img) if crypt else None


def open_chains(m, key_file, tree, what):
    """For an operation that rewrites, merges or moves layers of the domain's chains (consolidation,
    optimization, tier moves, delete, repair): the Crypt of `key_file`, with `m.qemu_img` then a
    KeyedQemuImg, so every qemu-img call opens LUKS layers with the key (QemuImg's own calls, same
    signatures); None, and the plain runner, for a domain with nothing encrypted and no key_file.
    Refused without key_file on an encrypted domain, and with a wrong key, before anything changes."""
    crypt = crypt_for(m, dict(key_file=key_file), tree, what, m.domain_xml())
    if crypt is not None and not isinstance(m.qemu_img, KeyedQemuImg):
        m.qemu_img = crypt.keyed(m.qemu_img)
    return crypt


def describe_persistent(m, crypt):
    """After layers under the VM's images were merged, moved or rebased: the persistent definition
    describes each chain holding a LUKS layer again, from the image headers. libvirt opens such a
    layer only through a <backingStore> naming its secret, so one naming a merged or moved file would
    keep the VM from starting."""
    if crypt is None:
        return
    persistent = m.domain_xml(inactive=True)
    before = persistent.to_string()
    for disk in persistent.disks:
        if disk.source_file and os.path.isfile(disk.source_file) and disk.driver_type == 'qcow2':
            chain = m.qemu_img.chain(disk.source_file, 'qcow2')
            if any(_luks.image_encrypted(i) for i in chain):
                _luks.describe_chain(disk, chain, crypt.secret_uuid)
    if persistent.to_string() != before:
        m.hypervisor.define(persistent.to_string())


def keeps_encrypted(view, sources, dest):
    """Whether copying the data of the images `sources` into the image `dest` keeps encrypted data
    encrypted (false: some source is a LUKS layer and `dest` is not). `view`: the operation's ChainView."""
    return _luks.image_encrypted(view.info(dest)) or not any(_luks.image_encrypted(view.info(p)) for p in sources)


def export_crypt(m, snap, fmt, key_file=None, encrypt=False, decrypt=False, compress=False, incremental=False,
                 include_memory=False):
    """How an export of `snap` treats encryption: (KeyedQemuImg or None, whether the bundle's disks are
    written LUKS-encrypted). Refused, before anything is written, where it cannot keep encrypted data
    encrypted.

    A snapshot whose frozen chains hold a LUKS layer is exported encrypted (same key) unless
    `decrypt` says, explicitly, to write it in clear; `encrypt` encrypts the export of any snapshot."""
    if encrypt and decrypt:
        raise Refused('encrypt and decrypt exclude each other; nothing was written')
    luks = [d.device for d in snap.disk_files
            if snap.has_overlays and any(_luks.image_encrypted(i) for i in m.qemu_img.chain(d.file_path, d.format))]
    if include_memory and snap.memory_file and os.path.exists(snap.memory_file) \
            and _memory_codec.is_encoded(snap.memory_file):
        raise Refused("snapshot '%s' has an encrypted or compressed memory file, and exports with include_memory do "
                      "not carry those yet (the bundle holds a plain save image); export it without include_memory; "
                      "nothing was written" % snap.name)
    if not luks and not encrypt:
        if decrypt:
            raise Refused("decrypt: snapshot '%s' is not encrypted; nothing was written" % snap.name)
        return None, False
    what = "snapshot '%s' (encrypted disks: %s)" % (snap.name, ', '.join(luks)) if luks else 'encrypt'
    if not key_file:
        raise Refused("%s: the export needs key_file (the key the snapshots were encrypted with); nothing was "
                      "written" % what)
    if fmt != 'bundle':
        raise Refused('%s: encrypted chains and encrypted exports work with format bundle only (format is %s); '
                      'nothing was written' % (what, fmt))
    if incremental:
        raise Refused('%s: incremental exports of encrypted chains are not built yet; export it in full; nothing was '
                      'written' % what)
    if compress:
        raise Refused('%s: compress does not go with encryption (qcow2 cannot compress encrypted clusters); nothing '
                      'was written' % what)
    crypt = Crypt(m, key_file)          # a wrong key is refused here
    return crypt.keyed(m.qemu_img), not decrypt


def encrypted_parts(m, tree=None, dom=None):
    """What of the domain is encrypted, for messages: snapshot names and disk targets."""
    parts = []
    if tree is not None:
        parts += ['snapshot %s' % s.name for s in tree.ordered() if getattr(s, 'encrypted', False)]
    if dom is not None:
        parts += ['disk %s' % d.target for d in dom.disks if d.writable and _luks.disk_encrypted(d)]
    return parts


def refuse_encrypted(m, tree, what, memory=False):
    """For operations that do not handle encrypted chains yet: refuse before changing anything.
    With `memory`, also for compressed memory files (the operation restores or copies RAM as a
    plain libvirt save image)."""
    parts = encrypted_parts(m, tree, m.domain_xml())
    zipped = [s.name for s in tree.ordered() if getattr(s, 'memory_compression', None)] if memory else []
    if zipped and not parts:
        raise Refused("domain '%s' has snapshots with compressed memory files (%s), and %s does not read "
                      "those yet; nothing was changed" % (m.domain.name, ', '.join(zipped), what))
    if parts:
        raise Refused("domain '%s' has encrypted %s, and %s does not work on encrypted chains yet "
                      "(it would need to read or rewrite LUKS layers); nothing was changed"
                      % (m.domain.name, ', '.join(parts), what))


def check_merge(m, frozen, upper, method):
    """Refuse a delete's merge of `frozen` and `upper` that would write encrypted data in clear.

    `method`: 'pull' copies `frozen` up into `upper` (the VM's active overlay), 'commit' copies
    `upper` down into `frozen`, 'rebase' (qemu-img, offline) copies `frozen` up into `upper`; qemu-img
    opens LUKS layers only with the key (open_chains made m.qemu_img a KeyedQemuImg)."""
    low, high = _luks.image_encrypted(m.view.info(frozen)), _luks.image_encrypted(m.view.info(upper))
    if method == 'commit' and high and not low:
        raise Refused('deleting this snapshot would commit the encrypted image %s into the unencrypted %s '
                      '(writing encrypted data in clear); nothing was changed' % (upper, frozen))
    if method != 'commit' and low and not high:
        raise Refused('deleting this snapshot would pull the encrypted image %s into the unencrypted %s '
                      '(writing encrypted data in clear); nothing was changed' % (frozen, upper))
    if method == 'rebase' and (low or high) and not isinstance(m.qemu_img, KeyedQemuImg):
        raise Refused('deleting this snapshot would rebase %s onto the image below %s with qemu-img, which '
                      'opens LUKS layers only with the key: give key_file; nothing was changed' % (upper, frozen))


def release_secret(m, tree):
    """Remove the domain's secret and key verifier once no image needs them any more."""
    if encrypted_parts(m, tree, m.domain_xml(inactive=True)):
        return
    if m.domain.is_active and encrypted_parts(m, None, m.domain_xml()):
        return
    path = os.path.join(m.store.root, 'encryption.json')
    if os.path.exists(path):
        Secrets(m.hypervisor).remove(secret_uuid(m.domain.uuid))
        os.unlink(path)


# -- memory files ---------------------------------------------------------------------------
def missing_library(params):
    """(library, import traceback) a task's encryption or compression options need and lack, or None."""
    if (params.get('encrypt') or params.get('key_file')) and not _memory_codec.HAS_CRYPTOGRAPHY:
        return 'cryptography', _memory_codec.CRYPTOGRAPHY_IMPORT_ERROR
    if params.get('memory_compression') == 'zstd' and not _memory_codec.HAS_ZSTD:
        return 'zstandard', _memory_codec.ZSTD_IMPORT_ERROR
    return None


def check_compression(compression):
    if compression == 'zstd' and not _memory_codec.HAS_ZSTD:
        raise Refused('memory_compression zstd needs the Python library zstandard on the hypervisor')


def memory_scratch(m, snap_dir, memory_bytes, encrypted):
    """A private directory for a clear save image: tmpfs when it must not reach the disk (checked
    for room), else the snapshot's own directory. (directory, remove_it)."""
    if not encrypted:
        return snap_dir, False
    require_free(TMPFS, memory_bytes * MEMORY_MARGIN, 'the RAM state, held in memory (tmpfs) until it is encrypted')
    return _scratch.make('nova-mem-', TMPFS), True


def _save_dir(dest):
    return os.path.join(TMPFS, 'nova-mem-save-%s' % hashlib.sha256(os.path.realpath(dest).encode()).hexdigest()[:20])


def save_scratch(dest, memory_bytes):
    """The private tmpfs directory the RAM of a VM on encrypted disks is saved into before it is
    sealed into `dest`. Its name comes from `dest`, so a run killed between libvirt's save (the VM is
    stopped then) and the seal finds the RAM there (saved_ram) instead of losing it."""
    require_free(TMPFS, memory_bytes * MEMORY_MARGIN, 'the RAM state, held in memory (tmpfs) until it is encrypted')
    scratch = _save_dir(dest)
    try:
        os.mkdir(scratch, 0o700)
    except FileExistsError:
        if os.path.islink(scratch) or os.stat(scratch).st_uid != os.getuid():
            raise Refused('%s is not a directory of this user; refusing to save RAM into it' % scratch)
        os.chmod(scratch, 0o700)
    return scratch


def saved_ram(dest):
    """(scratch directory, the complete clear save image in it) a killed run left for `dest`, or None."""
    scratch = _save_dir(dest)
    raw = os.path.join(scratch, 'memory.raw')
    try:
        with open(raw, 'rb') as f:
            complete = f.read(len(SAVE_COMPLETE)) == SAVE_COMPLETE
    except OSError:
        return None
    return (scratch, raw) if complete else None


def seal_memory(raw, dest, key, compression):
    """Encode the save image `raw` into the nova memory file `dest` (crash-safe), remove `raw`."""
    partial = dest + '.partial'
    try:
        _memory_codec.encode(raw, partial, key=key, compression=compression)
        install(partial, dest)
    finally:
        for path in (raw, partial):
            if os.path.exists(path):
                os.unlink(path)


class OpenMemory(object):
    """The save image to restore from `memory_file`: the file itself, or (a nova memory file) its
    decoded copy in a private directory (tmpfs when encrypted), removed by close()."""

    def __init__(self, m, memory_file, crypt=None, encrypted=False):
        self.path = memory_file
        self.scratch = None
        if not memory_file or not os.path.exists(memory_file) or not _memory_codec.is_encoded(memory_file):
            if encrypted and memory_file:
                raise Refused('the memory file %s should be encrypted and is not; refusing to restore it' % memory_file)
            return
        is_encrypted, _compression = _memory_codec.describe(memory_file)
        if (is_encrypted or encrypted) and crypt is None:
            raise Refused('the memory file %s is encrypted: give key_file; nothing was changed' % memory_file)
        if is_encrypted:
            need = m.domain_xml(inactive=True).memory_bytes * MEMORY_MARGIN
            require_free(TMPFS, need, 'the decrypted RAM state (held in memory only)')
            self.scratch = _scratch.make('nova-mem-', TMPFS)
        else:
            self.scratch = _scratch.make('.nova-mem-', m.store.root)
        self.path = os.path.join(self.scratch, 'memory.save')
        try:
            _memory_codec.decode(memory_file, self.path, key=crypt.key if (crypt and (is_encrypted or encrypted)) else None)
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.scratch:
            _scratch.remove(self.scratch)
            self.scratch = None
