# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sizes, the cleanup order, stale lock holders, io_limit and the per-disk job rounds (issue 14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from hypothesis import given, strategies as st

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._stale_lock import LockHeld, force_unlock, holder_gone
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._store import Store
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused
from ansible_collections.nova.snapshots.plugins.module_utils.model._space import (
    Candidate, choose, cleanup_order, parse_size, ranges_minus)
from ansible_collections.nova.snapshots.plugins.module_utils.operations._jobs import Step, check_io_limit, rounds, run_steps


@pytest.mark.parametrize('text, n', [
    ('10GB', 10 * 1000 ** 3), ('512MiB', 512 * 2 ** 20), ('1.5G', int(1.5 * 2 ** 30)), ('4096', 4096),
    (' 2 k ', 2048), ('3TB', 3 * 1000 ** 4), ('7b', 7), (1048576, 1048576),
])
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize('bad', ['', 'ten', '10XB', '-5MB', '0', 0, True, '1.2.3G', 'GB'])
def test_parse_size_refuses_with_the_units(bad):
    with pytest.raises(Refused) as e:
        parse_size(bad)
    assert 'free_space' in e.value.msg


def test_ranges_minus_table():
    assert ranges_minus([(0, 100)], []) == 100
    assert ranges_minus([(0, 100)], [(0, 100)]) == 0
    assert ranges_minus([(0, 100)], [(10, 20), (50, 10)]) == 70
    assert ranges_minus([(0, 10), (20, 10)], [(5, 20)]) == 10
    assert ranges_minus([(100, 50)], [(0, 10), (200, 10)]) == 50


@given(st.lists(st.booleans(), min_size=1, max_size=64), st.lists(st.booleans(), min_size=1, max_size=64))
def test_ranges_minus_matches_sets(a_bits, b_bits):
    def ranges(bits):
        out = []
        for i, bit in enumerate(bits):
            if bit:
                if out and out[-1][0] + out[-1][1] == i * 8:
                    out[-1] = (out[-1][0], out[-1][1] + 8)
                else:
                    out.append((i * 8, 8))
        return out
    a = set(i for i, bit in enumerate(a_bits) if bit)
    b = set(i for i, bit in enumerate(b_bits) if bit)
    assert ranges_minus(ranges(a_bits), ranges(b_bits)) == 8 * len(a - b)


def test_cleanup_order_beyond_retention_first_then_oldest_and_choose_skips_nothing_freed():
    cands = [Candidate('a', 'new', 300, 10), Candidate('a', 'old', 100, 10), Candidate('b', 'pruned', 200, 10, True),
             Candidate('b', 'empty', 50, 0)]
    order = cleanup_order(cands)
    assert [c.name for c in order] == ['pruned', 'empty', 'old', 'new']
    chosen, total = choose(order, 15)
    assert [c.name for c in chosen] == ['pruned', 'old'] and total == 20
    assert choose(order, 1000) == (order[:1] + order[2:], 30)


def test_holder_gone():
    assert holder_gone(dict(pid=os.getpid(), host='h', boot_id='b'), host='h', boot='b')[0] is False
    assert holder_gone(dict(pid=os.getpid(), host='h', boot_id='old'), host='h', boot='b')[0] is True
    assert holder_gone(dict(pid=os.getpid(), host='other'), host='h', boot='b')[0] is None
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    gone, why = holder_gone(dict(pid=dead.pid, host='h', boot_id='b'), host='h', boot='b')
    assert gone is True and str(dead.pid) in why


def test_force_unlock_stale_record_live_holder_and_free(tmp_path):
    store = Store(str(tmp_path), 'vm')
    with store.lock(operation='test'):
        pass
    assert force_unlock(store, False)['changed'] is False           # released cleanly: nothing to clear
    # a holder killed with the lock held: the kernel released the flock, its record stays
    script = ('import fcntl, json, os, signal, socket\n'
              'fd = os.open(%r, os.O_RDWR | os.O_CREAT)\nfcntl.flock(fd, fcntl.LOCK_EX)\n'
              'os.write(fd, json.dumps(dict(pid=os.getpid(), host=socket.gethostname(), operation="x", since=1)).encode())\n'
              'os.kill(os.getpid(), signal.SIGKILL)\n' % store.lock_path)
    subprocess.run([sys.executable, '-c', script], check=False)      # it kills itself
    assert store.lock_holder()['operation'] == 'x'
    checked = force_unlock(store, True)
    assert checked['changed'] and checked['lock']['state'] == 'stale' and store.lock_holder()['operation'] == 'x'
    done = force_unlock(store, False)
    assert done['lock']['state'] == 'stale' and store.lock_holder() is None
    assert force_unlock(store, False)['changed'] is False
    # a live holder: refused, with its details
    live = subprocess.Popen([sys.executable, '-c', script.replace('os.kill(os.getpid(), signal.SIGKILL)', 'import time; time.sleep(30)')])
    try:
        deadline = time.time() + 10
        while not store.lock_holder() and time.time() < deadline:
            time.sleep(0.05)
        with pytest.raises(LockHeld) as e:
            force_unlock(store, False)
        assert 'pid %d' % live.pid in e.value.msg and 'alive' in e.value.msg
        assert json.loads(open(store.lock_path).read())['pid'] == live.pid
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize('bad', [0, -1, 'x', True])
def test_io_limit_refused(bad):
    with pytest.raises(Refused):
        check_io_limit(bad)
    assert check_io_limit(None) is None and check_io_limit('1024') == 1024


class Op(object):
    def __init__(self, device, n):
        self.device, self.n = device, n


def test_rounds_keep_each_disk_in_order():
    ops = [Op('vda', 1), Op('vda', 2), Op('vdb', 1), Op('vda', 3)]
    assert [[(o.device, o.n) for o in r] for r in rounds(ops)] == [[('vda', 1), ('vdb', 1)], [('vda', 2)], [('vda', 3)]]


def test_run_steps_starts_all_before_finishing_and_finishes_started_ones_on_error():
    log = []

    class Pending(object):
        def __init__(self, name):
            self.name = name

        def finish(self):
            log.append('finish ' + self.name)

    def start(name, fail=False):
        def go():
            if fail:
                raise Refused('cannot start ' + name)
            log.append('start ' + name)
            return Pending(name)
        return go
    run_steps([Step('vda', start('a'), lambda: log.append('after a')), Step('vdb', start('b'))])
    assert log == ['start a', 'start b', 'finish a', 'after a', 'finish b']
    del log[:]
    with pytest.raises(Refused):
        run_steps([Step('vda', start('a')), Step('vdb', start('b', fail=True)), Step('vdc', start('c'))])
    assert log == ['start a', 'finish a']


def test_disk_settings_findings():
    from ansible_collections.nova.snapshots.plugins.module_utils.operations._diagnose import _settings_problems
    base = dict(cache=None, io=None, discard='unmap', detect_zeroes=None, iothread=None, bus='virtio')
    assert _settings_problems('vda', '/i', base, 'qcow2') == []
    found = _settings_problems('vda', '/i', dict(base, cache='writethrough', discard=None, bus='ide'), 'qcow2')
    assert [(p['severity'], p['problem'].split(':')[0]) for p in found] == [
        ('warning', "cache='writethrough'"), ('info', 'discard is not unmap'), ('warning', "bus='ide' is an emulated controller, slower than virtio")]
    assert "cache='none' io='native'" in found[0]['fix']
    threads = _settings_problems('vda', '/i', dict(base, cache='none'), 'qcow2')
    assert [p['severity'] for p in threads] == ['info'] and "io='native'" in threads[0]['fix']


def test_qemu_img_commit_and_convert_take_the_rate_limit():
    from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import QemuImg
    calls = []

    def run(cmd, environ_update=None):
        calls.append(cmd)
        return 0, '', ''
    q = QemuImg(run)
    q.commit('/s/top.qcow2', '/s/base.qcow2', rate=1048576)
    q.commit('/s/top.qcow2', '/s/base.qcow2')
    q.rewrite_layer('/s/l.qcow2', '/s/l.new', '/s/b.qcow2', 'qcow2', rate=2097152)
    assert calls[0] == ['qemu-img', 'commit', '-q', '-d', '-f', 'qcow2', '-b', '/s/base.qcow2', '-r', '1048576', '/s/top.qcow2']
    assert '-r' not in calls[1]
    assert calls[2][:8] == ['qemu-img', 'convert', '-q', '-f', 'qcow2', '-O', 'qcow2', '-r'] and calls[2][8] == '2097152'
