# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's planners over fake collaborators: what each refuses, plans or leaves alone.

SnapshotManager.from_parts takes the libvirt domain and qemu-img runner as arguments, so the
decisions are tested here as tables; the integration tests run the same planners against the
real libvirtd and assert on the guest's disks.
"""

from __future__ import annotations

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import ImageInfo
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._store import Store
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import (
    Conflict,
    InsufficientSpace,
    NotFound,
    Refused,
    SnapshotNotFound,
)
from ansible_collections.nova.snapshots.plugins.module_utils.model._plan import Plan
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import SnapshotDisk, VmSnapshot
from ansible_collections.nova.snapshots.plugins.module_utils.operations._branches import TreeManager
from ansible_collections.nova.snapshots.plugins.module_utils.operations._create import plan_create
from ansible_collections.nova.snapshots.plugins.module_utils.operations._delete import plan_delete
from ansible_collections.nova.snapshots.plugins.module_utils.operations._revert import plan_revert
from ansible_collections.nova.snapshots.plugins.module_utils.operations._snapshots import SnapshotManager

DOMAIN = '''<domain type='qemu'><name>web</name><memory unit='MiB'>192</memory><devices>
<disk type='file' device='disk'><driver name='qemu' type='%s'/><source file='/img/vda.%s'/><target dev='vda'/></disk>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/img/vdb.qcow2'/><target dev='vdb'/><readonly/></disk>
<disk type='file' device='cdrom'><source file='/img/cd.iso'/><target dev='hdc'/><readonly/></disk>
</devices></domain>'''


class FakeDomain:
    """What the planners ask of libvirt: the state, the XML, snapshots, the agent."""

    def __init__(self, state='running', fmt='qcow2', agent=None, persistent=True):
        self.name = 'web'
        self.uuid = '5f0c1c57-0000-4000-8000-000000000001'
        self.is_persistent = persistent
        self.state = state
        self.fmt = fmt
        self.agent = agent
        self.calls = []

    @property
    def is_active(self):
        return self.state in ('running', 'paused')

    def xml(self, inactive=False):
        return DOMAIN % (self.fmt, self.fmt)

    def snapshot_names(self):
        return []

    def current_snapshot_name(self):
        return None

    def agent_ping(self):
        return self.agent

    def __getattr__(self, name):       # anything that would change the VM is recorded, never done
        def record(*args, **kwargs):
            self.calls.append(name)
        return record


class FakeQemuImg:
    def info(self, path, fmt=None):
        return ImageInfo({'filename': path, 'format': 'qcow2', 'virtual-size': 1 << 26, 'actual-size': 1 << 20})

    def chain(self, path, fmt=None):
        return [self.info(path)]


def manager(tmp_path, **domain):
    store = Store(str(tmp_path), 'web')
    return SnapshotManager.from_parts(None, FakeDomain(**domain), store, FakeQemuImg())


def snap(name, stype='disk_only', parent=None, sid=None):
    return VmSnapshot(sid or 'id-' + name, 'web', name, stype, 1, 'running',
                      [SnapshotDisk('vda', '/img/vda.qcow2', 'qcow2')], parent_snapshot=parent)


@pytest.mark.parametrize('kwargs,domain,error,words', [
    (dict(snapshot_type='memory'), dict(state='shutoff'), Refused, 'a memory snapshot needs a running or paused VM'),
    (dict(snapshot_type='internal', quiesce=True), {}, Refused, 'libvirt cannot quiesce an internal snapshot'),
    (dict(snapshot_type='disk_only', quiesce=True), dict(state='paused'), Refused, 'quiesce needs a running guest'),
    (dict(snapshot_type='disk_only', quiesce=True), dict(agent='not connected'), Refused, 'does not answer: not connected'),
    (dict(snapshot_type='internal'), dict(fmt='raw'), Refused, 'internal snapshots need qcow2 disks; vda is not qcow2'),
    (dict(disks=['vdz']), {}, NotFound, "has no disk vdz; its disks are hdc, vda, vdb"),
    (dict(disks=['vdb']), {}, Refused, 'disk vdb (it is read-only) cannot be snapshotted'),
    (dict(name='a/b'), {}, Refused, "contains '/'"),
])
def test_create_refuses_before_anything_changes(tmp_path, kwargs, domain, error, words):
    m = manager(tmp_path, **domain)
    tree = m.load(write=False)[0]
    args = dict(dict(name='s1', snapshot_type='disk_only'), **kwargs)
    name, stype = args.pop('name'), args.pop('snapshot_type')
    with pytest.raises(error) as raised:
        plan_create(m, tree, name, stype, **args)
    assert words in raised.value.msg
    assert m.domain.calls == [] and not (tmp_path / 'web').exists()


@pytest.mark.parametrize('have,asked,changed', [
    ('disk_only', 'disk_only', False),
    ('disk_only', None, False),
    ('disk_only', 'external', 'conflict'),
    (None, 'external', True),
])
def test_create_is_idempotent_by_name(tmp_path, have, asked, changed):
    m = manager(tmp_path)
    tree = m.load(write=False)[0]
    if have:
        tree.add(snap('s1', have))
    if changed == 'conflict':
        with pytest.raises(Conflict, match="already exists with different settings: snapshot_type is 'disk_only'"):
            plan_create(m, tree, 's1', asked)
        return
    plan = plan_create(m, tree, 's1', asked)
    assert plan.changed is changed
    if changed:
        assert plan.actions == ['take external snapshot s1 of web (disks vda, with RAM)']
        assert plan.after['disks'] == ['vda'] and plan.after['memory'] is True


def test_create_refuses_mixing_internal_with_external(tmp_path):
    m = manager(tmp_path)
    tree = m.load(write=False)[0]
    tree.add(snap('s1', 'disk_only'))
    with pytest.raises(Refused, match='does not mix internal and external snapshots'):
        plan_create(m, tree, 's2', 'internal')


def test_create_checks_space_first(tmp_path, monkeypatch):
    from ansible_collections.nova.snapshots.plugins.module_utils.adapters import _files
    monkeypatch.setattr(_files, 'free_bytes', lambda path: 1024)
    m = manager(tmp_path)
    with pytest.raises(InsufficientSpace) as raised:
        plan_create(m, m.load(write=False)[0], 's1', 'memory')
    assert raised.value.msg.startswith('not enough free space in %s: ' % m.store.root)
    assert 'nothing was changed' in raised.value.msg


def test_revert_plans(tmp_path):
    m = manager(tmp_path, state='shutoff')
    tree = m.load(write=False)[0]
    with pytest.raises(SnapshotNotFound, match="domain 'web' has no snapshot named 'nope'"):
        plan_revert(m, tree, 'nope')
    tree.add(snap('s1'))
    plan = plan_revert(m, tree, 's1')
    assert plan.changed and plan.after == dict(current='s1', state='shutoff')
    tree.last_revert = dict(id='id-s1', state='shutoff')
    assert plan_revert(m, tree, 's1').changed is False          # already there: nothing to do
    assert plan_revert(m, tree, 's1', force=True).changed is True
    assert m.domain.calls == []


def test_transient_domains_are_refused_before_a_revert_or_switch(tmp_path):
    m = manager(tmp_path, persistent=False)
    tree = m.load(write=False)[0]
    tree.add(snap('s1'))
    with pytest.raises(Refused, match="domain 'web' is transient .* nothing was changed"):
        plan_revert(m, tree, 's1')
    with pytest.raises(Refused, match='is transient'):
        TreeManager(m).plan_switch(tree, 's1')
    assert m.domain.calls == []


def test_delete_plans(tmp_path):
    m = manager(tmp_path, state='shutoff')
    tree = m.load(write=False)[0]
    assert plan_delete(m, tree, 'nope').changed is False        # absent already
    tree.add(snap('a'))
    tree.add(snap('b', parent='id-a'))
    tree.add(snap('c', parent='id-b'))
    keep = plan_delete(m, tree, 'b')
    assert keep.actions == ['delete snapshot b of web', 're-parent c onto a']
    every = plan_delete(m, tree, 'a', children='delete')
    assert every.actions == ['delete snapshot a of web', 'delete snapshot b of web', 'delete snapshot c of web']
    assert m.domain.calls == []


def test_branch_plans(tmp_path):
    m = manager(tmp_path, state='shutoff')
    tree = m.load(write=False)[0]
    branches = TreeManager(m)
    with pytest.raises(SnapshotNotFound):
        branches.plan_branch(tree, 'dev', 'nope')
    tree.add(snap('base'))
    plan = branches.plan_branch(tree, 'dev', 'base')
    assert plan.changed and plan.after == dict(branches=['dev'], active='main')
    tree.add(snap('inside', 'internal', sid='id-i'))
    with pytest.raises(Refused, match='branches need external, memory or disk_only snapshots'):
        branches.plan_branch(tree, 'dev2', 'base')


def test_plans_compose():
    done = []
    first = Plan(True, ['one'], before={'a': 1}, after={'a': 2}, apply=lambda: done.append(1))
    second = Plan(True, ['two'], after={'b': 3}, apply=lambda: done.append(2) or 'result', extra={'k': 'v'})
    both = first.then(second)
    assert both.changed and both.actions == ['one', 'two'] and both.extra == {'k': 'v'}
    assert both.apply() == 'result' and done == [1, 2]
    assert first.then(Plan.unchanged()) is first and Plan.unchanged().then(second) is second
