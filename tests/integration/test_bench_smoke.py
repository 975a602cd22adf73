# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make bench`'s entry point, run once at the smallest sizes, the way a new user runs it from a fresh
clone: every benchmark starts, finishes, and prints its lines as `name: ours=... peer=... ratio=...`.
The figures themselves are not judged here (benchmarks are not timed tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import testbed

SMALLEST = {
    'NOVA_BENCH_ROUNDS': '1',
    'NOVA_BENCH_LAYER_MIB': '16',
    'NOVA_BENCH_POLICY_VMS': '2',
    'NOVA_BENCH_FLEET_VMS': '2',
    'NOVA_BENCH_VERIFY_LAYERS': '1',
    'NOVA_BENCH_VERIFY_LAYER_MIB': '16',
    'NOVA_BENCH_EXPORT_MIB': '16',
    'NOVA_BENCH_JOBS_MIB': '16',
}
# `name: ours=... peer=... ratio=...` (a name may say what it compares in parentheses; a pure planner has a limit)
LINE = re.compile(r'^[A-Za-z0-9_]+( \([^)]*\))?: ours=[0-9.]+\S* (peer=[0-9.]+\S* ratio=[0-9.]+|limit=[0-9.]+)\S*( .*)?$')


def test_every_benchmark_runs_at_the_smallest_size():
    bench = os.path.join(testbed.TOP, 'bench')
    env = dict(os.environ, **SMALLEST)
    env.pop('PYTHONPATH', None)     # bench/common.py finds the installed collection itself
    proc = subprocess.run([sys.executable, 'run.py'], cwd=bench, env=env, capture_output=True, text=True,
                          timeout=1800, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line and not line.startswith('#')]
    assert lines, proc.stdout
    wrong = [line for line in lines if not LINE.match(line)]
    assert wrong == [], wrong
