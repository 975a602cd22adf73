# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""qemu-img on chains with LUKS-encrypted layers.

`qemu-img info` reads an encrypted image's header without the key; `check`, `map`, `compare` and
`convert` have to open the layers and need it (`Parameter 'encrypt.key-secret' is required for
cipher`). Every call made here gets

- `--object secret,id=nova-key0,file=KEY_FILE`: qemu-img reads the key from the file itself, so the
  key is never on a command line, in an environment or in a log (the file's *path* is);
- the image as a `json:` spec that describes the whole chain explicitly (the chain and which
  layers are encrypted come from `qemu-img info --backing-chain`, which needs no key): each LUKS
  layer gets `encrypt.key-secret=nova-key0`, the others none, every format stated, every backing
  named by its full path. (Options of the top image do not reach a backing image qemu-img opens
  from a header, so the chain has to be explicit.)

One key per domain (docs/encryption.md), so one secret object opens every layer.

KeyedQemuImg also answers the calls a block-level merge makes of a QemuImg (info, chain, map,
extract, copy_bytes, an unsafe rebase), so operations/_merge.py reads and writes LUKS layers
through it unchanged: every byte window is a json: spec of the whole chain with the key, and a
window written into a LUKS image is encrypted by QEMU on the way in.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._luks import ITER_TIME_MS, image_encrypted, luks_options, write_key_slot
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import SECRET_ID, MapExtent, QemuImgFailed

LUKS_HEADER_BYTES = 4 * 1024 * 1024     # a LUKS header with 8 key slots takes about 2 MiB
WRONG_KEY = 'cannot unlock any keyslot'


class WrongKey(QemuImgFailed):
    """The key file does not open a LUKS layer (the task's error, not a finding about the image)."""


def _wrong_key(key_file, msg):
    return WrongKey('key_file %s does not open the LUKS layers (wrong key); nothing was changed: %s' % (key_file, msg),
                    key_file=key_file)


def chain_spec(path, infos, secret_id=SECRET_ID, backing=True):
    """The json: spec (a dict) opening `path`, whose `qemu-img info --backing-chain` is `infos`
    ([ImageInfo], top first), with the key secret on every encrypted layer.

    backing=False opens the top layer alone (its backing cut off: what the layer holds itself)."""
    if not infos:
        raise QemuImgFailed('no image information for %s' % path)
    names = [os.path.abspath(path)] + [i.backing_file for i in infos[:-1]]
    spec = None
    for info, filename in reversed(list(zip(infos, names))):
        if not filename:
            raise QemuImgFailed('the backing chain of %s names an image without a path' % path)
        fmt = info.format or 'raw'
        node = {'driver': fmt, 'file': {'driver': 'file', 'filename': os.path.abspath(filename)}}
        if fmt == 'luks':
            node['key-secret'] = secret_id
        elif image_encrypted(info):
            node['encrypt'] = {'format': 'luks', 'key-secret': secret_id}
        if spec is not None:
            node['backing'] = spec
        elif backing and fmt == 'qcow2' and info.backing_file:
            raise QemuImgFailed('the backing chain of %s stops at %s, which names a backing file %s'
                                % (path, filename, info.backing_file))
        spec = node
    if not backing and spec.get('driver') == 'qcow2':
        spec['backing'] = None
    return spec


def spec_name(spec):
    return 'json:' + json.dumps(spec, sort_keys=True)


def secret_object(key_file, secret_id=SECRET_ID):
    """The --object argument that makes qemu-img read the key from `key_file` (commas doubled, as
    QEMU's option syntax wants)."""
    return 'secret,id=%s,file=%s' % (secret_id, os.path.abspath(key_file).replace(',', ',,'))


# qemu-img subcommands that change no image (any other one through run() forgets remembered maps)
READ_ONLY = ('info', 'map', 'measure', 'compare')


class KeyedQemuImg(object):
    """qemu-img calls (through the one runner, a QemuImg) on images whose chains hold LUKS layers,
    all opened with the key in `key_file`. Images without encrypted layers work the same way."""

    def __init__(self, qemu_img, key_file, remember_maps=False, iter_time=ITER_TIME_MS):
        self.qemu_img = qemu_img
        self.key_file = key_file
        self.iter_time = iter_time      # of the LUKS layers it writes (the domain's, Crypt.iter_time)
        # Each map opens every LUKS layer of the chain (a PBKDF2 of the layer's iter-time each). A merge maps
        # the same images several times while planning; every write through run() forgets what was
        # remembered; other callers leave this off.
        self.maps = {} if remember_maps else None
        # {image: ImageInfo} of images whose header names its backing by a json: chain (a keyed
        # rebase killed between its two calls): the header is rewritten before the next write
        self.unsettled = {}

    def spec(self, path, fmt=None, backing=True):
        return chain_spec(path, self.chain(path, fmt), backing=backing)

    def name(self, path, fmt=None, backing=True):
        return spec_name(self.spec(path, fmt, backing))

    def run(self, subcommand, *args, **kwargs):
        """qemu-img `subcommand` with the key's secret object; `changes=False` for a write into
        scratch space (an extracted window), which keeps the remembered maps."""
        if kwargs.get('changes', subcommand not in READ_ONLY):
            self._changed()
        try:
            return self.qemu_img.run(subcommand, '--object', secret_object(self.key_file), *args)
        except QemuImgFailed as e:
            if WRONG_KEY in e.msg:
                raise _wrong_key(self.key_file, e.msg)
            raise

    def check(self, path, fmt='qcow2'):
        """`qemu-img check` of `path` (its chain opened with the key): the parsed JSON report."""
        rc, out, err = self.qemu_img.run_status('check', '--object', secret_object(self.key_file), '--output=json',
                                                '-U', self.name(path, fmt))
        try:
            return json.loads(out)
        except ValueError:
            msg = (err or '').strip()
            if WRONG_KEY in msg:
                raise _wrong_key(self.key_file, msg)
            raise QemuImgFailed('qemu-img check %s failed (rc=%d): %s' % (path, rc, msg))

    def measure(self, path, fmt=None, out_fmt='qcow2'):
        """Bytes a flattened copy of the disk `path` shows needs (plus room for a LUKS header)."""
        out = self.run('measure', '-U', '--output=json', '-O', out_fmt, self.name(path, fmt))
        return json.loads(out)['required'] + LUKS_HEADER_BYTES

    def map(self, path, fmt='qcow2', backing=True):
        """[MapExtent] of the disk `path` shows (with backing=False: of the layer alone)."""
        key = (os.path.realpath(path), fmt, backing)
        if self.maps is not None and key in self.maps:
            return self.maps[key]
        extents = [MapExtent(d) for d in json.loads(self.run('map', '--output=json', '-U', self.name(path, fmt, backing)))]
        if self.maps is not None:
            self.maps[key] = extents
        return extents

    def _changed(self):
        if self.maps is not None:
            self.maps.clear()
        self._settle()

    def _settle(self):
        """Finish what a killed keyed rebase began: each header seen naming its backing by our json:
        chain gets the plain path (the same image) before anything else is written. Never in check
        mode or a read: only a write calls this, and the chain reads right until then."""
        while self.unsettled:
            path, info = self.unsettled.popitem()
            alone = spec_name(chain_spec(path, [info], backing=False))
            self.qemu_img.run('rebase', '-q', '-u', '--object', secret_object(self.key_file),
                              '-F', info.backing_format or 'qcow2', '-b', info.backing_file, alone)

    def compare(self, spec_a, spec_b):
        """True when the disks the json: specs (or images, opened through their chains) show are byte
        for byte equal."""
        spec_a, spec_b = [s if isinstance(s, dict) else self.spec(s) for s in (spec_a, spec_b)]
        rc, out, err = self.qemu_img.run_status('compare', '--object', secret_object(self.key_file), '-q', '-U',
                                                spec_name(spec_a), spec_name(spec_b))
        if rc in (0, 1):
            return rc == 0
        if WRONG_KEY in (err or ''):
            raise _wrong_key(self.key_file, err.strip())
        raise QemuImgFailed('qemu-img compare failed (rc=%d): %s' % (rc, (err or out).strip()))

    # -- what operations/_merge.py asks of a QemuImg ----------------------------------------------
    def info(self, path, fmt=None):
        info = self.qemu_img.info(path, fmt)        # a header: no key needed
        if info.header_backing != info.backing_file:
            self.unsettled[os.path.abspath(path)] = info
        return info

    def chain(self, path, fmt=None):
        infos = self.qemu_img.chain(path, fmt)
        names = [os.path.abspath(path)] + [i.backing_file for i in infos[:-1]]
        for name, info in zip(names, infos):
            if info.header_backing != info.backing_file:
                self.unsettled[name] = info
        return infos

    def window(self, path, fmt, offset, length):
        """The json: name of bytes [offset, offset+length) of the disk `path` shows, its chain keyed."""
        return spec_name({'driver': 'raw', 'offset': offset, 'size': length, 'file': self.spec(path, fmt)})

    def extract(self, path, fmt, offset, length, dest):
        """Bytes [offset, offset+length) of the disk `path` shows, in clear, into a new raw file `dest`:
        the caller puts `dest` where clear data may be (a private tmpfs directory)."""
        self.run('convert', '-U', '-f', 'raw', '-O', 'raw', self.window(path, fmt, offset, length), dest, changes=False)

    def copy_bytes(self, source, source_fmt, dest, dest_fmt, offset, length):
        """QemuImg.copy_bytes with both chains keyed: into a LUKS `dest` the bytes go encrypted."""
        self.run('convert', '-U', '-n', '-f', 'raw', '-O', 'raw', self.window(source, source_fmt, offset, length),
                 self.window(dest, dest_fmt, offset, length))

    def convert(self, spec, dest, out_fmt='qcow2', encrypt=False, options=None, rate=None):
        """Flatten the disk the json: `spec` shows into a new image `dest`; with `encrypt` (qcow2 only)
        `dest` is a LUKS-encrypted qcow2 with the same key, so the data is never written in clear."""
        args = ['convert', '-q', '-U']
        if rate:
            args += ['-r', str(int(rate))]
        opts = list(options or [])
        if encrypt:
            if out_fmt != 'qcow2':
                raise QemuImgFailed('an encrypted copy must be qcow2, not %s' % out_fmt)
            opts += luks_options(SECRET_ID, self.iter_time)
        args += ['-O', out_fmt]
        if opts:
            args += ['-o', ','.join(opts)]
        command = args + [spec_name(spec), dest]
        if encrypt:
            write_key_slot(lambda: self.run(*command), dest)
        else:
            self.run(*command)

    # -- the calls of QemuImg that chain operations make (consolidation, delete, tier moves,
    # optimization, repair), with the same signatures, so an operation given a key works through
    # this object as it does through the plain runner. What needs no key is the plain runner's.
    def __getattr__(self, name):
        if name == 'qemu_img':
            raise AttributeError(name)      # not set yet (a copy being made): no recursion
        return getattr(self.qemu_img, name)

    def measure_layer(self, path, fmt='qcow2', out_fmt='qcow2'):
        """Bytes a new image holding only `path`'s own data needs (plus a LUKS header's room)."""
        out = self.run('measure', '-U', '--output=json', '-O', out_fmt, self.name(path, fmt, backing=False))
        return json.loads(out)['required'] + LUKS_HEADER_BYTES

    def rebase(self, path, backing, backing_format, fmt='qcow2', unsafe=False):
        """QemuImg.rebase on a chain with LUKS layers: `path` keeps what a guest sees (unsafe=True:
        only its header changes) while its backing becomes `backing` (or none)."""
        # the header only: the image opened alone (its backing, which may be gone, is not read)
        alone = spec_name(chain_spec(path, [self.info(path, fmt)], backing=False))
        if unsafe:
            self.run(*(['rebase', '-q', '-u'] + (['-F', backing_format] if backing else []) + ['-b', backing or '', alone]))
            return
        infos = self.chain(path, fmt)
        source = spec_name(chain_spec(path, infos))
        new = self.chain(backing, backing_format) if backing else []
        if not any(image_encrypted(i) for i in new):
            self.run(*(['rebase', '-q'] + (['-F', backing_format] if backing else []) + ['-b', backing or '', source]))
            return
        # qemu-img opens the new backing by the name -b gives, with its format only, so a LUKS layer
        # in it needs the whole keyed chain as a json: name; that name lands in the header and is
        # replaced by the plain path at once (header only: both name the same chain).
        self.run('rebase', '-q', '-F', backing_format, '-b', spec_name(chain_spec(backing, new)), source)
        self.run('rebase', '-q', '-u', '-F', backing_format, '-b', backing, alone)

    def commit(self, top, base, fmt='qcow2', rate=None):
        """QemuImg.commit on a chain with LUKS layers: `base` shows what `top` shows, `top` is left as it was.

        `qemu-img commit -b` cannot find an image by its name in a json: chain, so the layers are
        committed one at a time, each into the image below it, down to `base`: the images between
        are written too (the callers merge those away)."""
        infos = self.chain(top, fmt)
        names = [os.path.realpath(top)] + [os.path.realpath(i.backing_file) for i in infos[:-1] if i.backing_file]
        if os.path.realpath(base) not in names[1:]:
            raise QemuImgFailed('%s is not below %s in its backing chain' % (base, top))
        depth = names.index(os.path.realpath(base))
        if not any(image_encrypted(i) for i in infos[:depth + 1]):
            return self.qemu_img.commit(top, base, fmt, rate)
        for k in range(depth):
            args = ['commit', '-q', '-d'] + (['-r', int(rate)] if rate else [])
            self.run(*(args + [spec_name(chain_spec(names[k], infos[k:]))]))
        return None

    def rewrite_layer(self, path, dest, backing, backing_format, compression=None, rate=None):
        """QemuImg.rewrite_layer on a chain with LUKS layers: a new image `dest` with `path`'s own data
        on the same backing, LUKS-encrypted (same key) when `path` is; zeros dropped. An encrypted
        layer is not compressed: qcow2 cannot compress encrypted clusters."""
        infos = self.chain(path, 'qcow2')
        if not any(image_encrypted(i) for i in infos):
            return self.qemu_img.rewrite_layer(path, dest, backing, backing_format, compression, rate)
        encrypted = image_encrypted(infos[0])
        if compression and encrypted:
            raise QemuImgFailed('%s is encrypted: qcow2 cannot compress its clusters' % path)
        if not backing:
            return self.convert(chain_spec(path, infos), dest, encrypt=encrypted, rate=rate)
        # qemu-img convert would open the new image through its (encrypted) backing without the key,
        # so `dest` is made first, then filled (-n) through options that key every LUKS layer under it
        create = ['create', '-q', '-u', '-f', 'qcow2', '-F', backing_format, '-b', backing]
        if encrypted:
            create += ['-o', ','.join(luks_options(SECRET_ID, self.iter_time))]
        elif compression:
            create += ['-o', 'compression_type=%s' % compression]
        old = os.umask(0o077)       # private from the start
        try:
            write_key_slot(lambda: self.run(*(create + [dest, str(infos[0].virtual_size)])), dest)
        finally:
            os.umask(old)
        target = ['driver=qcow2', 'file.filename=%s' % os.path.abspath(dest).replace(',', ',,')]
        target += ['backing.' * depth + 'encrypt.key-secret=%s' % SECRET_ID
                   for depth, info in enumerate([infos[0] if encrypted else None] + infos[1:]) if info and image_encrypted(info)]
        self.run(*(['convert', '-q', '-n'] + (['-r', int(rate)] if rate else []) + (['-c'] if compression else []) +
                   ['-B', backing, spec_name(chain_spec(path, infos)), '--target-image-opts', ','.join(target)]))
        return None

    def repair_leaks(self, path, fmt='qcow2'):
        """`qemu-img check -r leaks` of `path`, opened with the key."""
        self.run('check', '-q', '-r', 'leaks', self.name(path, fmt))
