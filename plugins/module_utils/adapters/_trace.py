# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Where a task's time goes (`timings`) and the human-readable operation log.

One Trace per module run (a module is one process), reached through `current()`. The few places
every call passes through open a phase: the qemu-img runner (`qemu_img`), libvirt's `_call`
(`libvirt`), crash-safe file writes (`store`), the domain lock (`lock_wait`), planning (`plan`).
Time is counted once, in the innermost phase: a qemu-img call made while planning counts as
qemu_img, not plan, so the phases never add up to more than `total`.

Each step that changes something (a libvirt call that is not a read, a qemu-img command other than
info/map/check/measure/compare) is one line of the operation log with its duration; with `debug`
every call is logged. Lines carry what a call is and its command line, never its data or XML,
and text that looks like a secret (`data=`, `passphrase=`, `key=`, `password=`) is masked.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import time
from contextlib import contextmanager

PHASES = ('plan', 'lock_wait', 'libvirt', 'qemu_img', 'store', 'apply')
READ_WORDS = ('reading', 'listing', 'looking')
READ_COMMANDS = ('info', 'map', 'check', 'measure', 'compare')
_SECRET = re.compile(r'((?:data|passphrase|password|key-secret|key|secret)=)[^,\s]*', re.I)


def mask(text):
    return _SECRET.sub(r'\1***', text)


class Trace(object):
    def __init__(self, clock=time.time):
        self.clock = clock
        self.started = clock()
        self.spent = dict((p, 0.0) for p in PHASES)
        self.stack = []          # [(phase, started, seconds spent in inner phases)]
        self.sink = None         # write(line): the operation log, when one is open
        self.debug = False
        self.prefix = ''
        self.secrets = ()        # values of the task's no_log options: never written, whatever the text

    def timings(self):
        total = self.clock() - self.started
        out = dict((p, round(s, 3)) for p, s in self.spent.items())
        out['total'] = round(max(total, sum(self.spent.values())), 3)
        return out

    @contextmanager
    def phase(self, name, step=None, change=False):
        """Count the time inside as `name` (minus inner phases); log `step` (a change, or anything
        with debug) with its duration and outcome."""
        start = self.clock()
        self.stack.append([name, start, 0.0])
        outcome = 'ok'
        try:
            yield
        except BaseException as e:
            outcome = 'failed: %s' % (getattr(e, 'msg', None) or e.__class__.__name__)
            raise
        finally:
            _name, _start, inner = self.stack.pop()
            took = self.clock() - start
            self.spent[name] = self.spent.get(name, 0.0) + max(0.0, took - inner)
            if self.stack:
                self.stack[-1][2] += took
            if step and (change or self.debug):
                self.log('%s %s (%.3fs)%s' % (name, step, took, '' if outcome == 'ok' else ' ' + outcome))

    def log(self, text):
        if self.sink is not None:
            text = mask(text)
            for secret in self.secrets:
                text = text.replace(secret, '********')
            stamp = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(self.clock()))
            self.sink('%sZ %s%s\n' % (stamp, self.prefix, text.replace('\n', ' ')))


_CURRENT = [Trace()]


def current():
    return _CURRENT[0]


def start(clock=time.time):
    """A new trace for this run (a module runs once per process; tests start one per case)."""
    _CURRENT[0] = Trace(clock)
    return _CURRENT[0]


def qemu_img_step(cmd):
    """(step text, whether it changes something) for a command line run by the qemu-img runner."""
    words = [os.path.basename(str(cmd[0]))] + [str(c) for c in cmd[1:]]
    sub = words[1] if len(words) > 1 else ''
    change = not (words[0] == 'qemu-img' and sub in READ_COMMANDS)
    return ' '.join(words), change


def traced_runner(run_command):
    """run_command wrapped so each call counts as qemu_img and is logged (AnsibleModule.run_command's signature)."""
    def run(cmd, *args, **kwargs):
        step, change = qemu_img_step(cmd)
        with current().phase('qemu_img', step, change):
            return run_command(cmd, *args, **kwargs)
    return run


@contextmanager
def libvirt_call(what, fn_name):
    change = not what.startswith(READ_WORDS)
    with current().phase('libvirt', what if fn_name.startswith('<') else '%s [%s]' % (what, fn_name), change):
        yield


def append_line(path, text):
    """Append one line to the operation log (one write of an O_APPEND file: lines of runs at once
    do not interleave); the directory is created private, the file 0640."""
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, 0o750)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, text.encode('utf-8'))
    finally:
        os.close(fd)
