# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""nova_storage: where a store's space goes, freeing a given amount of it, stuck locks.

`analyze` (`nova snapshot analyze web-server --storage`) reads only: per domain and snapshot the
bytes on disk, the bytes only that snapshot holds (what deleting it frees: its memory file, and its
frozen layer less the data the safe delete copies into the image above), the shared rest, memory
files, and recommendations with the bytes each saves.

`cleanup` (`nova storage cleanup --free-space 10GB`) deletes policy-made, unprotected snapshots
through the safe delete (operations/_delete.py, children kept) until the filesystem has the free
space asked for: first those their policy's retention would prune anyway, then the oldest. Hand-made
and protected snapshots only when asked. The plan is made (and shown in check mode) from estimates;
the run measures the free space after each delete and stops once the target is met.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._chains import needed_files, real, uppers
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import disk_usage, free_bytes
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._policy_store import PolicyStore
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._stale_lock import force_unlock
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Failed, InsufficientSpace, NotFound, NovaError, Refused
from ansible_collections.nova.snapshots.plugins.module_utils.model._policy import CATEGORY, TAG_POLICY, TAG_PROTECTED, read_tags
from ansible_collections.nova.snapshots.plugins.module_utils.model._retention import plan_retention
from ansible_collections.nova.snapshots.plugins.module_utils.model._space import (
    Candidate,
    choose,
    cleanup_order,
    human,
    parse_size,
)
from ansible_collections.nova.snapshots.plugins.module_utils.operations._chain_health import describe_disks
from ansible_collections.nova.snapshots.plugins.module_utils.operations._delete import merge_copy_bytes, plan_delete
from ansible_collections.nova.snapshots.plugins.module_utils.operations._enforce import own_records
from ansible_collections.nova.snapshots.plugins.module_utils.operations._jobs import check_io_limit
from ansible_collections.nova.snapshots.plugins.module_utils.operations._snapshots import SnapshotManager


class TargetNotMet(Failed):
    """The free space asked for could not be reached; the details say how far it got and what holds the rest."""


def open_managers(hypervisor, storage_dir, qemu_img, domains=None, lock_timeout=60, job_timeout=600):
    """A SnapshotManager for each domain with a store in `storage_dir` (narrowed to `domains`)."""
    names = hypervisor.domain_names()
    if domains:
        missing = [d for d in domains if d not in names]
        if missing:
            raise NotFound('domain %s is not defined on %s' % (', '.join(missing), hypervisor.uri))
        names = [n for n in names if n in domains]
    managers = []
    for name in names:
        m = SnapshotManager(hypervisor, name, storage_dir, qemu_img, lock_timeout=lock_timeout, job_timeout=job_timeout)
        if os.path.exists(m.store.tree_path) or (domains and name in domains):
            managers.append(m)
    return managers


# -- what a snapshot holds ---------------------------------------------------------------------
def _on(path, dev):
    if dev is None:
        return True
    try:
        return os.stat(path).st_dev == dev
    except OSError:
        return False


def policy_made(snap):
    return snap.category == CATEGORY and snap.origin == 'nova' and any(t.startswith(TAG_POLICY) for t in snap.tags)


def layer_freed(m, tree, snap, disk, tops, dev=None):
    """(bytes deleting `snap` frees of this disk's frozen layer, why nothing when 0) -- as the delete's layer_step decides."""
    frozen = disk.file_path
    if snap.snapshot_type == 'internal' or not os.path.exists(frozen):
        return 0, None
    for other in tree.snapshots.values():
        od = other.disk(disk.device)
        if other.id != snap.id and od and real(od.file_path) == real(frozen):
            return 0, "snapshot '%s' holds the same image" % other.name
    if not m.store.owns(frozen):
        return 0, '%s was not created by the collection (the base image is never deleted)' % frozen
    size = (disk_usage(frozen) or 0) if _on(frozen, dev) else 0
    above = uppers(m.view, frozen, [t for t in tops if real(t) != real(frozen)])
    if not above:
        return size, None           # nothing reads it: collected whole
    if len(above) > 1:
        return 0, '%s is shared by %d images above it (branches)' % (frozen, len(above))
    copied = merge_copy_bytes(m, frozen, above[0]) if _on(above[0], dev) else 0
    return max(size - copied, 0), None


def snapshot_space(m, tree, snap, tops, dev=None):
    """{bytes_on_disk, exclusive_bytes, shared_bytes, memory_bytes, files, kept_because}."""
    files, on_disk, exclusive, why = [], 0, 0, []
    for d in snap.disk_files:
        size = disk_usage(d.file_path) or 0
        files.append(dict(device=d.device, file=d.file_path, bytes=size))
        on_disk += size if snap.snapshot_type != 'internal' else 0
        freed, reason = layer_freed(m, tree, snap, d, tops, dev)
        exclusive += freed
        if reason:
            why.append(reason)
    memory = 0
    if snap.memory_file:
        memory = disk_usage(snap.memory_file) or 0
        files.append(dict(device=None, file=snap.memory_file, bytes=memory))
        if _on(snap.memory_file, dev):
            exclusive += memory
    elif snap.snapshot_type == 'internal':
        for d in snap.disk_files[:1]:
            for s in (m.view.info(d.file_path).raw.get('snapshots') or []) if os.path.exists(d.file_path) else []:
                if s.get('name') == snap.name:
                    memory = s.get('vm-state-size') or 0
        exclusive += memory
    on_disk += memory
    return dict(bytes_on_disk=on_disk, exclusive_bytes=exclusive, shared_bytes=max(on_disk - exclusive, 0),
                memory_bytes=memory, files=files, kept_because=why)


def beyond_retention(m, tree, policies, now):
    """{snapshot name: policy} of snapshots a stored policy's retention would prune now."""
    out = {}
    for policy in policies:
        records = own_records(tree, policy['name'])[0]
        for rec, _rule in plan_retention(records, policy.get('retain') or {}, now).prune:
            out.setdefault(rec.key, policy['name'])
    return out


def stored_policies(storage_dir):
    store = PolicyStore(storage_dir)
    out = []
    for name in store.names():
        try:
            policy = store.load(name)
        except NovaError:
            continue        # a broken policy file is nova_policy's to report
        if policy:
            out.append(policy)
    return out


# -- analyze -------------------------------------------------------------------------------
def analyze_domain(m, policies, now, max_chain_length=10, threshold=80):
    tree = m.load(write=False)[0]
    tops = m.all_tops(tree)
    pruned = beyond_retention(m, tree, policies, now)
    snaps = []
    for snap in tree.ordered():
        space = snapshot_space(m, tree, snap, tops)
        snaps.append(dict(space, name=snap.name, snapshot_type=snap.snapshot_type, created_at=snap.created_at,
                          policy_made=policy_made(snap), protected=TAG_PROTECTED in snap.tags,
                          beyond_retention=snap.name in pruned))
    disks = describe_disks(m, tree, broken_ok=True)
    recs = _recommend(m, tree, snaps, disks, max_chain_length, threshold)
    store_bytes = _tree_usage([m.store.root] + m.store.tier_dirs())
    return dict(domain=m.domain.name, store=m.store.root, store_bytes=store_bytes,
                snapshot_count=len(snaps), snapshots=snaps,
                memory_bytes=sum(s['memory_bytes'] for s in snaps),
                exclusive_bytes=sum(s['exclusive_bytes'] for s in snaps),
                chains=dict((k, dict(length=v['length'], overhead_percent=v['overhead_percent'])) for k, v in disks.items()),
                recommendations=recs)


def _tree_usage(roots):
    total, seen = 0, set()
    for root in roots:
        for directory, _dirs, names in os.walk(root):
            for n in names:
                path = os.path.join(directory, n)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


def _recommend(m, tree, snaps, disks, max_chain_length, threshold):
    name = m.domain.name
    recs = []
    for dev, chain in sorted(disks.items()):
        used = sum(c['actual_size'] or 0 for c in chain['chain'])
        if chain['length'] > max_chain_length or chain['overhead_percent'] > threshold:
            flattened = used / (1 + chain['overhead_percent'] / 100.0) if chain['overhead_percent'] else used
            recs.append(dict(action='consolidate', domain=name, disk=dev, saves=int(max(used - flattened, 0)),
                             reason='chain of %d images uses %.1f%% more space than one flattened image (at most '
                                    'that is saved; restore points are kept)' % (chain['length'], chain['overhead_percent']),
                             task={'nova.snapshots.nova_chain': dict(domain=name, state='consolidated')}))
    writable = set(real(t) for t in m.writable_tops(tree))
    frozen = [p for p in sorted(needed_files(m.view, m.all_tops(tree))) if p not in writable and m.store.owns(p)]
    current = set()
    for top in m.active_tops():
        current.update(real(p) for p in m.view.chain(top))
    optimized = m.store.optimized()
    open_now = m.open_images()
    compressible, saves = [], 0
    for path in frozen:
        if path in optimized or path in open_now or m.view.info(path).format != 'qcow2':
            continue
        try:
            gain = (disk_usage(path) or 0) - m.qemu_img.measure_layer(path)
        except NovaError:
            continue
        compressible.append(path)
        saves += max(gain, 0)
    if compressible:
        recs.append(dict(action='compress', domain=name, files=compressible, saves=saves,
                         reason='%d frozen layer(s) never optimized; dropping unused space saves %s, zstd '
                                'compression more (depends on the data)' % (len(compressible), human(saves)),
                         task={'nova.snapshots.nova_chain': dict(domain=name, state='optimized', compression='zstd')}))
    archive = [p for p in frozen if p not in current]
    if archive:
        recs.append(dict(action='move_to_archive', domain=name, files=archive,
                         saves=sum(disk_usage(p) or 0 for p in archive),
                         reason='%d frozen layer(s) the VM does not read (old restore points, other branches) '
                                'can live on slower storage' % len(archive),
                         task={'nova.snapshots.nova_chain': dict(domain=name, state='consolidated',
                                                                 archive_storage='/srv/hdd/nova')}))
    old = [s for s in snaps if s['beyond_retention'] and not s['protected']]
    if old:
        recs.append(dict(action='delete_old_policy_snapshots', domain=name, snapshots=[s['name'] for s in old],
                         saves=sum(s['exclusive_bytes'] for s in old),
                         reason="%d policy snapshot(s) are beyond their policy's retention" % len(old),
                         task={'nova.snapshots.nova_policy': dict(state='enforced', domain=name)}))
    return recs


def analyze(managers, storage_dir, now=None, max_chain_length=10, threshold=80):
    now = now or time.time()
    policies = stored_policies(storage_dir)
    domains = [analyze_domain(m, policies, now, max_chain_length, threshold) for m in managers]
    st = os.statvfs(storage_dir) if os.path.isdir(storage_dir) else None
    fs = dict(path=storage_dir, free_bytes=free_bytes(storage_dir),
              size_bytes=st.f_blocks * st.f_frsize if st else None)
    recs = [r for d in domains for r in d['recommendations']]
    return dict(changed=False, domains=domains, filesystem=fs, recommendations=recs,
                total_saves=sum(r['saves'] for r in recs if r['action'] != 'move_to_archive'))


# -- cleanup -------------------------------------------------------------------------------
def _eligible(snap, include_manual, include_protected):
    if TAG_PROTECTED in snap.tags and not include_protected:
        return False, 'protected (set include_protected to delete it)'
    if not policy_made(snap) and not include_manual:
        return False, 'made by hand, not by a policy (set include_manual to delete it)'
    return True, None


def _candidates(managers, policies, now, include_manual, include_protected, dev):
    """(ordered Candidates, held [{domain, snapshot, bytes, reason}])."""
    cands, held = [], []
    for m in managers:
        tree = m.load(write=False)[0]
        tops = m.all_tops(tree)
        pruned = beyond_retention(m, tree, policies, now)
        for snap in tree.ordered():
            space = snapshot_space(m, tree, snap, tops, dev)
            ok, why = _eligible(snap, include_manual, include_protected)
            if ok and not space['exclusive_bytes']:
                ok, why = False, 'deleting it frees nothing here (%s)' % ('; '.join(space['kept_because']) or 'no files of its own')
            if not ok:
                held.append(dict(domain=m.domain.name, snapshot=snap.name, bytes=space['bytes_on_disk'], reason=why))
                continue
            at = read_tags(snap.tags, snap.creation_time)[3]
            cands.append((m, Candidate(m.domain.name, snap.name, at, space['exclusive_bytes'],
                                       snap.name in pruned, pruned.get(snap.name))))
    order = cleanup_order([c for _m, c in cands])
    by_key = dict(((c.domain, c.name), m) for m, c in cands)
    return [(by_key[(c.domain, c.name)], c) for c in order], held


def _images_held(managers, dev):
    out = []
    for m in managers:
        for top in sorted(set(m.active_tops())):
            if _on(top, dev):
                out.append(dict(domain=m.domain.name, snapshot=None, bytes=disk_usage(top) or 0,
                                reason='%s is the image the VM writes to' % top))
    return out


def cleanup(managers, storage_dir, free_space, check_mode, path=None, include_manual=False,
            include_protected=False, now=None):
    """Delete snapshots until the filesystem of `path` (default storage_dir) has `free_space` free."""
    target = parse_size(free_space)
    where = path or storage_dir
    if not os.path.isdir(where):
        raise NotFound('%s does not exist (path must be storage_dir or a tier directory)' % where)
    dev = os.stat(where).st_dev
    now = now or time.time()
    policies = stored_policies(storage_dir)
    free = free_bytes(where)
    result = dict(changed=False, target_bytes=target, free_before=free, free_after=free, target_met=free >= target,
                  deleted=[], planned=[], held=[], actions=[], diff=dict(before=dict(free_bytes=free), after=dict(free_bytes=free)))
    if free >= target:
        return result
    cands, held = _candidates(managers, policies, now, include_manual, include_protected, dev)
    chosen, estimate = choose([c for _m, c in cands], target - free)
    result['planned'] = [c.to_dict() for c in chosen]
    result['held'] = held + _images_held(managers, dev)
    result['actions'] = ['delete snapshot %s of %s (frees about %s%s)' % (
        c.name, c.domain, human(c.freed), ", beyond policy '%s' retention" % c.policy if c.pruned_by_policy else '')
        for c in chosen]
    names = dict((c.domain, []) for c in chosen)
    for c in chosen:
        names[c.domain].append(c.name)
    result['diff'] = dict(before=dict(free_bytes=free, delete=names), after=dict(free_bytes=free + estimate))
    if free + estimate < target:
        raise TargetNotMet(
            '%s free on %s; %s asked for, and deleting every snapshot allowed would free only about %s of '
            'the %s missing; nothing was deleted. Held: %s' % (
                human(free), where, human(target), human(estimate), human(target - free), _held_words(result['held'])),
            **result)
    if check_mode:
        result['changed'] = bool(chosen)
        return result
    for m, c in cands:
        if free_bytes(where) >= target:
            break
        tree = m.load(write=False)[0]
        snap = tree.by_name(c.name)
        if snap is None or not snapshot_space(m, tree, snap, m.all_tops(tree), dev)['exclusive_bytes']:
            continue        # gone meanwhile, or an earlier delete took what it held
        before = free_bytes(where)
        try:
            m.run(False, lambda t, m=m, name=c.name: plan_delete(m, t, name, children='keep'))
        except InsufficientSpace as e:
            result['held'].append(dict(domain=c.domain, snapshot=c.name, bytes=c.freed,
                                       reason='its delete must copy data first: %s' % e.msg))
            continue
        result['deleted'].append(dict(domain=c.domain, name=c.name, freed=free_bytes(where) - before))
        result['changed'] = True
    result['free_after'] = free_bytes(where)
    result['target_met'] = result['free_after'] >= target
    result['diff']['after'] = dict(free_bytes=result['free_after'])
    if not result['target_met']:
        raise TargetNotMet('freed %s on %s by deleting %d snapshot(s); %s free, %s asked for. Held: %s' % (
            human(result['free_after'] - free), where, len(result['deleted']), human(result['free_after']),
            human(target), _held_words(result['held'])), **result)
    return result


def _held_words(held):
    if not held:
        return 'nothing else of the collection (other files fill the filesystem)'
    words = ['%s%s (%s): %s' % (h['domain'], '/' + h['snapshot'] if h['snapshot'] else '', human(h['bytes']), h['reason'])
             for h in held[:10]]
    return '; '.join(words) + (' and %d more' % (len(held) - 10) if len(held) > 10 else '')


# -- the module's task ----------------------------------------------------------------------
def storage_task(p, hypervisor, qemu_img, check_mode):
    state = p['state']
    domains = p['domains'] or ([p['domain']] if p['domain'] else None)
    if state == 'unlocked':
        if not p['domain']:
            raise Refused('state=unlocked needs domain (the domain whose lock to clear)')
        m = SnapshotManager(hypervisor, p['domain'], p['storage_dir'], qemu_img, lock_timeout=p['lock_timeout'])
        return force_unlock(m.store, check_mode)
    managers = open_managers(hypervisor, p['storage_dir'], qemu_img, domains, p['lock_timeout'], p['job_timeout'])
    for m in managers:
        m.io_limit = check_io_limit(p.get('io_limit'))
        m.parallel_disks = bool(p.get('parallel_disks'))
    if state == 'analyzed':
        return analyze(managers, p['storage_dir'], max_chain_length=p['max_chain_length'])
    if p['free_space'] is None:
        raise Refused('state=cleaned needs free_space (for example free_space: 10GB)')
    return cleanup(managers, p['storage_dir'], p['free_space'], check_mode, p['path'], p['include_manual'],
                   p['include_protected'])
