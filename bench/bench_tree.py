# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure tree layer (`_tree`) against libvirt's own snapshot tree, both holding the same 10,000 snapshots.

The tree: a chain of 5,000 from the root, and a 4-ary bush of 5,000 hanging off the chain's middle.
The peer is libvirt's `test:///default` driver (in memory, in this process, no disks), with every
snapshot redefined into it. Each query, ours against what a libvirt client does for the same answer:

- path_to_root of the deepest snapshot: walking `getParent()` up to the root.
- descendants of the root: `listAllChildren(VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS)`.
- common_ancestor of the chain's end and the bush's last leaf: walking both parents, the first into a set.
- render (our `render_text`, the whole drawing): `listAllSnapshots()` + `getParent()` of each, the data
  `virsh snapshot-list --tree` draws from; the peer does not draw.
- from_dict (our tree from its parsed JSON): the test driver loading the same snapshots from a node
  file, the way libvirt reads its saved snapshot XML (each with its domain, as libvirt keeps them).

Medians of RUNS runs per side, alternating.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import libvirt

from common import timed  # first: it puts the collection on sys.path
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import SnapshotDisk, VmSnapshot
from ansible_collections.nova.snapshots.plugins.module_utils.model._tree import Tree, render_text

SNAPSHOTS = 10000
CHAIN = 5000
FANOUT = 4
RUNS = 5
START = 1700000000
TEST_NS = 'http://libvirt.org/schemas/domain/test/1.0'


def layout():
    """[(name, parent name)] oldest first: the chain c00000..c04999, then the bush b00000.. under c02500."""
    snaps = [('c%05d' % i, 'c%05d' % (i - 1) if i else None) for i in range(CHAIN)]
    snaps += [('b%05d' % i, 'b%05d' % ((i - 1) // FANOUT) if i else 'c%05d' % (CHAIN // 2))
              for i in range(SNAPSHOTS - CHAIN)]
    return snaps


def our_tree(snaps):
    return Tree('test', [VmSnapshot('id-' + name, 'test', name, 'disk_only', START + i, 'shutoff',
                                    [SnapshotDisk('vda', '/var/lib/nova/%s.qcow2' % name)],
                                    parent_snapshot='id-' + parent if parent else None)
                         for i, (name, parent) in enumerate(snaps)])


def snapshot_xml(name, parent, when, domain_xml, extra=''):
    parent_xml = '<parent><name>%s</name></parent>' % parent if parent else ''
    return ('<name>%s</name>%s<creationTime>%d</creationTime><state>shutoff</state>%s%s'
            % (name, parent_xml, when, extra, domain_xml))


def define_peer(dom, snaps):
    """Redefine every snapshot in libvirt; the XML wants the domain it belongs to."""
    domain_xml = dom.XMLDesc()
    for i, (name, parent) in enumerate(snaps):
        dom.snapshotCreateXML('<domainsnapshot>%s</domainsnapshot>' % snapshot_xml(name, parent, START + i, domain_xml),
                              libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
    return domain_xml


def write_node_file(path, snaps, domain_xml):
    """The test driver's node file: the domain with its snapshots as libvirt stores them (`active` included)."""
    body = ''.join('<test:domainsnapshot xmlns:test="%s">%s</test:domainsnapshot>'
                   % (TEST_NS, snapshot_xml(name, parent, START + i, domain_xml, '<active>0</active>'))
                   for i, (name, parent) in enumerate(snaps))
    head, tail = domain_xml.rsplit('</domain>', 1)
    with open(path, 'w') as f:
        f.write('<node>%s%s</domain>%s</node>' % (head, body, tail))


def peer_parent(snap):
    try:
        return snap.getParent()
    except libvirt.libvirtError:   # a root: libvirt answers "no parent" with an error
        return None


def peer_path(snap):
    names = []
    while snap is not None:
        names.append(snap.getName())
        snap = peer_parent(snap)
    return names


def peer_common_ancestor(a, b):
    on_a = set(peer_path(a))
    return next((name for name in peer_path(b) if name in on_a), None)


def peer_topology(dom):
    out = []
    for snap in dom.listAllSnapshots():
        parent = peer_parent(snap)
        out.append((snap.getName(), parent.getName() if parent else None))
    return out


def peer_load(uri):
    conn = libvirt.open(uri)
    try:
        return conn.lookupByName('test').snapshotNum()
    finally:
        conn.close()


def report(name, ours_times, peer_times):
    """The project's line, with enough digits for queries that take microseconds."""
    o, p = statistics.median(ours_times), statistics.median(peer_times)
    print('%s: ours=%.6f peer=%.6f ratio=%.3g' % (name, o, p, o / p), flush=True)


def compare(name, ours, peer):
    mine, theirs = [], []
    for _round in range(RUNS):
        mine.append(timed(ours))
        theirs.append(timed(peer))
    report('tree_%s_10k' % name, mine, theirs)


def check_same_answers(tree, dom, ends, node_file):
    """Both sides must answer the same before their times mean anything."""
    root, deep, leaf = ('id-' + name for name in ends)
    peer_root, peer_deep, peer_leaf = (dom.snapshotLookupByName(name) for name in ends)
    answers = [
        ([tree.snapshots[i].name for i in tree.path_to_root(deep)], peer_path(peer_deep)),
        (sorted(s.name for s in tree.descendants(root)),
         sorted(s.getName() for s in peer_root.listAllChildren(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS))),
        (tree.snapshots[tree.common_ancestor(deep, leaf)].name, peer_common_ancestor(peer_deep, peer_leaf)),
        (sorted((s.name, tree.snapshots[s.parent_snapshot].name if s.parent_snapshot else None)
                for s in tree.snapshots.values()), sorted(peer_topology(dom))),
        (len(Tree.from_dict(tree.to_dict()).snapshots), peer_load('test://' + node_file)),
    ]
    for ours, theirs in answers:
        if ours != theirs:
            raise RuntimeError('ours and libvirt disagree: %.200r != %.200r' % (ours, theirs))


def run(tree, dom, ends, node_file):
    root, deep, leaf = ('id-' + name for name in ends)
    peer_root, peer_deep, peer_leaf = (dom.snapshotLookupByName(name) for name in ends)
    data = tree.to_dict()
    compare('path_to_root', lambda: tree.path_to_root(deep), lambda: peer_path(peer_deep))
    compare('descendants', lambda: tree.descendants(root),
            lambda: peer_root.listAllChildren(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS))
    compare('common_ancestor', lambda: tree.common_ancestor(deep, leaf),
            lambda: peer_common_ancestor(peer_deep, peer_leaf))
    compare('render', lambda: render_text(tree), lambda: peer_topology(dom))
    compare('from_dict', lambda: Tree.from_dict(data), lambda: peer_load('test://' + node_file))


def main():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)   # getParent() of a root "fails" on stderr
    snaps = layout()
    # The root, the deepest snapshot (the chain's end) and the bush's last leaf.
    ends = (snaps[0][0], 'c%05d' % (CHAIN - 1), snaps[-1][0])
    tree = our_tree(snaps)
    conn = libvirt.open('test:///default')
    try:
        dom = conn.lookupByName('test')
        start = time.perf_counter()
        domain_xml = define_peer(dom, snaps)
        version = libvirt.getVersion()
        print('# tree: %d snapshots (chain of %d + %d-ary bush); peer: libvirt %d.%d.%d test:///default, '
              'defined in %.1f s; medians of %d' % (len(snaps), CHAIN, FANOUT, version // 1000000,
                                                    version // 1000 % 1000, version % 1000,
                                                    time.perf_counter() - start, RUNS), flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            node_file = os.path.join(tmp, 'node.xml')
            write_node_file(node_file, snaps, domain_xml)
            check_same_answers(tree, dom, ends, node_file)
            run(tree, dom, ends, node_file)
    finally:
        conn.close()


if __name__ == '__main__':
    main()
