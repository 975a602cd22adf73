# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Encrypted and compressed memory snapshots against plain ones, same run, alternating rounds.

Two identical running guests: one takes encrypted memory snapshots (encrypt + key_file), the other
plain ones and zstd-compressed ones (memory_compression=zstd) in turn; the plain ones are the peer of both.

- create_memory_encrypted / revert_memory_encrypted: time, encrypted vs plain.
- create_memory_zstd / revert_memory_zstd: time, compressed vs plain.
- memory_file_zstd_mib / memory_file_encrypted_mib: the memory file's bytes on disk (MiB), vs plain.
"""

from __future__ import annotations

import os
import statistics

import libvirt

from common import report, run_ours, timed  # first: it puts the collection and the test bed on sys.path
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._secrets import secret_uuid  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.operations._create import plan_create  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.operations._revert import plan_revert  # noqa: E402
import testbed

ROUNDS = int(os.environ.get('NOVA_BENCH_ROUNDS', '3'))


def mib(path):
    return os.stat(path).st_blocks * 512 / 2 ** 20


def main(conn):
    os.makedirs(testbed.WORK_DIR, exist_ok=True)
    enc, plain = testbed.Guest(conn, disks=1), testbed.Guest(conn, disks=1)
    key_file = os.path.join(enc.dir, 'bench.key')
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, os.urandom(32).hex().encode())
    os.close(fd)
    kinds = {'encrypted': (enc, dict(key_file=key_file, encrypt=True), dict(key_file=key_file)),
             'zstd': (plain, dict(memory_compression='zstd'), {}),
             'plain': (plain, {}, {})}
    try:
        for guest in (enc, plain):
            guest.start()
        create = dict((k, []) for k in kinds)
        revert = dict((k, []) for k in kinds)
        size = dict((k, []) for k in kinds)
        for r in range(ROUNDS):
            for kind, (guest, create_args, key_args) in kinds.items():
                made = {}
                create[kind].append(timed(lambda: made.update(run_ours(
                    guest, lambda m, t: plan_create(m, t, '%s%d' % (kind, r), 'memory', **create_args)))))
                size[kind].append(mib(made['snapshot']['memory_file']))
            for kind, (guest, create_args, key_args) in kinds.items():
                revert[kind].append(timed(lambda: run_ours(
                    guest, lambda m, t: plan_revert(m, t, '%s%d' % (kind, r), force=True, **key_args))))
        for kind in ('encrypted', 'zstd'):
            report('create_memory_%s (vs plain)' % kind, create[kind], create['plain'])
            report('revert_memory_%s (vs plain)' % kind, revert[kind], revert['plain'])
            o, p = statistics.median(size[kind]), statistics.median(size['plain'])
            print('memory_file_%s_mib (vs plain): ours=%.1f peer=%.1f ratio=%.2f' % (kind, o, p, o / p), flush=True)
    finally:
        for guest in (enc, plain):
            guest.cleanup()
        try:
            conn.secretLookupByUUIDString(secret_uuid(enc.dom.UUIDString())).undefine()
        except libvirt.libvirtError:
            pass


if __name__ == '__main__':
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    main(libvirt.open('qemu:///system'))
