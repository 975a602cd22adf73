# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Charts of a `make bench-large` run: `python bench/plot.py <figures.json> <directory>`.

Reads the JSON bench_large.py writes (NOVA_BENCH_LARGE_JSON) and draws, into <directory>:
- vm.png: creation, revert and branch switch against the GiB of dirty RAM, ours and the peer;
- data.png: delete, merge, consolidation and export against the MiB of data they move;
- tree.png: tree operations against the number of snapshots;
- chain_read.png: the guest's read throughput against the depth of its backing chain;
- rss.png: the peak RSS of every module run.
Each curve is ours (solid) and the peer's (dashed) from the same run.
"""

from __future__ import annotations

import json
import os
import re
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file backend)

X_KEYS = ('ram_mib', 'layer_mib', 'changed_mib', 'data_mib', 'snapshots')
SIZE = re.compile(r'_(ram_|layer_|of_)?\d+(MiB|GiB)(_each|_changed)?|_\d+_snapshots')


def series(results):
    """{op: [(x, ours, peer, rss)]}: each figure under its operation's name, x its size."""
    out = {}
    for r in results:
        if 'ours' not in r or 'peer' not in r:
            continue
        key = next((k for k in X_KEYS if k in r), None)
        if key is None:
            continue
        op = SIZE.sub('', r['name'])
        x = r[key] * (16 if op.startswith('consolidate_16') else 1)
        out.setdefault(op, []).append((x, r['ours'], r['peer'], r.get('rss_mib')))
    return dict((op, sorted(points)) for op, points in out.items())


def grid(ops, data, path, xlabel, xscale=None, title=None):
    ops = [op for op in ops if op in data]
    if not ops:
        return None
    cols = min(3, len(ops))
    rows = -(-len(ops) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, op in zip([a for row in axes for a in row], ops):
        xs = [p[0] for p in data[op]]
        ax.plot(xs, [p[1] for p in data[op]], 'o-', label='ours')
        ax.plot(xs, [p[2] for p in data[op]], 's--', label='peer')
        ax.set_title(op, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel('seconds', fontsize=8)
        ax.set_ylim(bottom=0)
        if xscale:
            ax.set_xscale(xscale)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in [a for row in axes for a in row][len(ops):]:
        ax.axis('off')
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def chain_read(results, path):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    drawn = False
    for ax, who in zip(axes, ('guest', 'host')):
        reads = sorted((r['depth'], r) for r in results if r['name'].startswith('%s_read_depth_' % who))
        if not reads:
            ax.axis('off')
            continue
        drawn = True
        depths = [d for d, _r in reads]
        ax.plot(depths, [r['data_mib'] / r['peer'] for _d, r in reads], 'o-', label='through the chain')
        ax.plot(depths, [r['data_mib'] / r['ours'] for _d, r in reads], 's--', label='after consolidation (flat)')
        ax.set_xlabel('chain depth (images)')
        ax.set_ylabel('MiB/s')
        where = 'TCG guest (dd)' if who == 'guest' else 'host (qemu-img bench)'
        ax.set_title('%s: sequential read of %d MiB' % (where, reads[0][1]['data_mib']), fontsize=9)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if not drawn:
        plt.close(fig)
        return None
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def rss(data, path):
    ops = sorted(op for op, points in data.items() if any(p[3] for p in points))
    if not ops:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(ops) + 1.2))
    ax.barh(ops, [max(p[3] or 0 for p in data[op]) for op in ops])
    ax.set_xlabel('peak RSS of the module run (MiB, qemu-img children included), largest size')
    ax.tick_params(axis='y', labelsize=7)
    ax.grid(True, axis='x', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1]) as f:
        results = json.load(f)['results']
    out = argv[2]
    if not os.path.isdir(out):
        os.makedirs(out)
    data = series(results)
    vm_ops = ['create_internal', 'create_external', 'create_memory', 'create_disk_only', 'revert_internal',
              'revert_memory', 'switch_running_branches']
    data_ops = ['delete_inner_offline', 'delete_inner_live', 'merge_branches', 'consolidate_16_layers',
                'export_bundle', 'export_incremental', 'export_incremental_vs_virtnbdbackup']
    tree_ops = ['tree_create', 'tree_list', 'tree_info_filtered', 'tree_revert_oldest', 'tree_delete_middle']
    written = [
        grid(vm_ops, dict((op, [(x / 1024.0, o, p, r) for x, o, p, r in points]) for op, points in data.items()),
             os.path.join(out, 'vm.png'), 'dirty RAM (GiB)'),
        grid(data_ops, data, os.path.join(out, 'data.png'), 'MiB of data'),
        grid(tree_ops, data, os.path.join(out, 'tree.png'), 'snapshots', xscale='log'),
        chain_read(results, os.path.join(out, 'chain_read.png')),
        rss(data, os.path.join(out, 'rss.png')),
    ]
    for path in written:
        if path:
            print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
