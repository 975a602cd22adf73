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

import pytest

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


# `run.py --list`, one test each so that the two pytest workers share them out
BENCHMARKS = ('snapshot', 'branches', 'tree', 'chain', 'policy', 'export', 'verify', 'encryption', 'fleet', 'jobs')


def run_bench(*args):
    env = dict(os.environ, **SMALLEST)
    env.pop('PYTHONPATH', None)     # bench/common.py finds the installed collection itself
    return subprocess.run([sys.executable, 'run.py'] + list(args), cwd=os.path.join(testbed.TOP, 'bench'), env=env,
                          capture_output=True, text=True, timeout=1800, check=False)


def test_the_smoke_tests_cover_every_benchmark_and_an_unknown_name_is_refused():
    assert tuple(run_bench('--list').stdout.split()) == BENCHMARKS
    proc = run_bench('snapshots')
    assert proc.returncode == 2 and 'no benchmark snapshots; there are: snapshot, branches' in proc.stderr
    assert 'ours=' not in proc.stdout


@pytest.mark.parametrize('name', BENCHMARKS)
def test_every_benchmark_runs_at_the_smallest_size(name):
    proc = run_bench(name)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line and not line.startswith('#')]
    assert lines, proc.stdout
    wrong = [line for line in lines if not LINE.match(line)]
    assert wrong == [], wrong


def test_bench_large_runs_at_toy_sizes_and_plots(tmp_path):
    """`make bench-large`'s entry point (bench_large.py) at its toy profile, then bench/plot.py on its
    figures: every part runs, every line has the project's format, and the charts are written."""
    bench = os.path.join(testbed.TOP, 'bench')
    figures = str(tmp_path / 'large.json')
    env = dict(os.environ, NOVA_BENCH_LARGE='tiny', NOVA_BENCH_LARGE_JSON=figures)
    env.pop('PYTHONPATH', None)
    proc = subprocess.run([sys.executable, 'bench_large.py'], cwd=bench, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line and not line.startswith('#')]
    wrong = [line for line in lines if not LINE.match(line)]
    assert wrong == [], wrong
    names = set(line.split(':')[0].split(' ')[0] for line in lines)
    for part in ('create_memory_ram_', 'switch_running_branches_ram_', 'delete_inner_offline_',
                 'merge_branches_', 'consolidate_16_layers_', 'guest_read_', 'tree_delete_middle_', 'export_bundle_',
                 'export_incremental_'):
        assert any(n.startswith(part) for n in names), (part, sorted(names))
    assert all(' rss_mib=' in line for line in lines if not line.startswith(('guest_read_', 'host_read_'))), lines
    charts = tmp_path / 'charts'
    proc = subprocess.run([sys.executable, os.path.join(bench, 'plot.py'), figures, str(charts)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for chart in ('vm.png', 'data.png', 'tree.png', 'chain_read.png', 'rss.png'):
        with open(str(charts / chart), 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n', chart
