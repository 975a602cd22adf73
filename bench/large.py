# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The large guest profile of `make bench-large`, and how its runs are measured.

- A large guest: a 10 GiB virtual disk whose data (a `write -P` pattern the guest can read back)
  lives in a shared base image written once from the host with qemu-io, and RAM of several GiB
  that the guest makes dirty by reading that data into its page cache (the test guest's `S`
  command: `dd` of N MiB of its disk), so a memory save is as large as a real one.
- measured(fn): fn() run in a forked child, timed there; the parent reads the child's peak RSS
  (it and every process it waited for, qemu-img included) from wait4's rusage.
- peer(cmds): the peer's commands, timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import traceback

import common  # first: it puts the collection and the test bed on sys.path
import testbed

from ansible_collections.nova.snapshots.plugins.module_utils.adapters import _trace  # noqa: E402

MIB = 2 ** 20
GUEST_OVERHEAD_MIB = 384      # RAM the guest's kernel and init need besides the data it caches


class Measure(object):
    """Seconds and peak RSS (MiB) of one side of a comparison."""

    def __init__(self, seconds, rss_mib, libvirt=None):
        self.seconds, self.rss_mib = seconds, rss_mib
        self.libvirt = libvirt      # of ours: seconds inside libvirt's calls (the module's trace)


def settle():
    """Write back what earlier steps left dirty in the page cache, so neither side pays for the other's writes."""
    os.sync()


def measured(fn):
    """Run fn() in a forked child (a module run is one process); its time and peak RSS."""
    settle()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:        # the child: no exceptions escape, no cleanup of the parent's objects
        os.close(r)
        code = 0
        try:
            trace = _trace.start()
            start = time.perf_counter()
            fn()
            reply = {'seconds': time.perf_counter() - start, 'libvirt': trace.timings()['libvirt']}
        except BaseException:       # handed to the parent below
            reply = {'error': traceback.format_exc()}
            code = 1
        os.write(w, json.dumps(reply).encode())
        os._exit(code)
    os.close(w)
    data = b''
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    _pid, _status, usage = os.wait4(pid, 0)
    reply = json.loads(data.decode() or '{"error": "the child died without a reply"}')
    if 'error' in reply:
        raise RuntimeError('ours failed:\n' + reply['error'])
    return Measure(reply['seconds'], usage.ru_maxrss / 1024.0, reply.get('libvirt'))


def peer(*cmds):
    """Run the peer's commands one after the other; their time (and a peak RSS, which is not reported:
    a command started by vfork counts this process's pages until its exec)."""
    settle()
    rss, start = 0.0, time.perf_counter()
    for cmd in cmds:
        if callable(cmd):
            cmd()
            continue
        proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode(errors='replace')
        proc.stderr.close()
        if proc.returncode != 0:
            raise RuntimeError('%s failed (rc=%d): %s' % (' '.join(str(c) for c in cmd), proc.returncode, err))
        rss = max(rss, usage.ru_maxrss / 1024.0)
    return Measure(time.perf_counter() - start, rss)


RESULTS = []


def report(name, ours, theirs, **facts):
    """The project's line, with the peak RSS of our module run; every figure also goes to RESULTS (for plot.py)."""
    ratio = ours.seconds / theirs.seconds if theirs.seconds else float('inf')
    extra = ''.join(' %s=%s' % kv for kv in sorted(facts.items()))
    print('%s: ours=%.3f peer=%.3f ratio=%.2f rss_mib=%.0f%s'
          % (name, ours.seconds, theirs.seconds, ratio, ours.rss_mib, extra), flush=True)
    RESULTS.append(dict(name=name, ours=ours.seconds, peer=theirs.seconds, ratio=ratio, rss_mib=ours.rss_mib, **facts))


def growth(op, points):
    """How an operation's time grows: points [(size, seconds)] sorted by size; a comment line."""
    points = sorted(points)
    if len(points) < 2:
        return
    (s0, t0), (s1, t1) = points[0], points[-1]
    exponent = 0.0
    if t0 > 0 and t1 > 0 and s1 > s0:
        import math
        exponent = math.log(t1 / t0) / math.log(float(s1) / s0)
    print('# growth %s: %s; time ~ size^%.2f (1.00 = linear)'
          % (op, ', '.join('%s -> %.3fs' % (s, t) for s, t in points), exponent), flush=True)
    RESULTS.append(dict(name='growth_' + op, points=points, exponent=exponent))


# -- images and guests ----------------------------------------------------------------------------

def qemu(*args):
    subprocess.run([str(a) for a in args], check=True, capture_output=True)


def write_pattern(path, pattern, offset_mib, mib, fmt='qcow2'):
    """`mib` MiB of byte `pattern` at `offset_mib` into the image, from the host (qemu-io, 256 MiB a request)."""
    cmds = []
    done = 0
    while done < mib:
        step = min(256, mib - done)
        cmds += ['-c', 'write -P %d %dM %dM' % (pattern, offset_mib + done, step)]
        done += step
    qemu('qemu-io', '-f', fmt, *(cmds + [path]))


def live_write(guest, pattern, offset_mib, mib, dev='virtio-disk0'):
    """The same pattern written by the running QEMU itself (HMP qemu-io on the guest's disk device), so
    dirty bitmaps see it as guest writes."""
    done = 0
    while done < mib:
        step = min(256, mib - done)
        cmd = 'qemu-io -d /machine/peripheral/%s/virtio-backend "write -P %d %dM %dM"' % (dev, pattern, offset_mib + done, step)
        out = subprocess.run(['virsh', '-c', common.URI, 'qemu-monitor-command', guest.name, '--hmp', cmd],
                             check=True, capture_output=True, text=True).stdout
        if out.strip():
            raise RuntimeError('qemu-io in %s: %s' % (guest.name, out.strip()))
        done += step


class Base(object):
    """A 10 GiB qcow2 holding `data_mib` MiB of pattern 0x5a from its start, shared read-only as the
    backing image of the large guests' disks."""

    def __init__(self, disk_mib, data_mib):
        self.path = os.path.join(testbed.WORK_DIR, 'bench-large-base-%d-%d.qcow2' % (disk_mib, data_mib))
        self.disk_mib, self.data_mib = disk_mib, data_mib
        start = time.perf_counter()
        qemu('qemu-img', 'create', '-q', '-f', 'qcow2', self.path, '%dM' % disk_mib)
        write_pattern(self.path, 0x5a, 0, data_mib)
        os.chmod(self.path, 0o644)
        print('# base image: %d MiB virtual, %d MiB of data written from the host in %.1f s'
              % (disk_mib, data_mib, time.perf_counter() - start), flush=True)

    def remove(self):
        if os.path.exists(self.path):
            os.unlink(self.path)


def set_memory(guest, ram_mib):
    def edit(root):
        for tag in ('memory', 'currentMemory'):
            node = root.find(tag)
            if node is not None:
                node.text = str(ram_mib * 1024)
                node.set('unit', 'KiB')
    guest.redefine(edit)


def large_guest(conn, base, dirty_mib):
    """A shut-off test guest whose vda is an overlay on `base`, with RAM for `dirty_mib` MiB of cached data."""
    guest = testbed.Guest(conn, disks=1, disk_mib=base.disk_mib)
    path = guest.disks['vda']
    os.unlink(path)
    qemu('qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base.path, path)
    set_memory(guest, dirty_mib + GUEST_OVERHEAD_MIB)
    return guest


def dirty(guests, mib):
    """Make `mib` MiB of each running guest's RAM hold data (its page cache, read from its disk), in
    parallel; returns the seconds it took."""
    errors = []

    def fill(guest):
        try:
            guest.command('S', 'vda', mib, timeout=1200, attempt=1200)
        except Exception as e:      # reported below
            errors.append(e)
    start = time.perf_counter()
    threads = [threading.Thread(target=fill, args=(g,)) for g in guests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start
