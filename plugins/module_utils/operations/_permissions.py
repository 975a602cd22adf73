# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""Owner, group and mode of a snapshot's directory and files (`nova_snapshot` owner/group/mode).

Like ansible.builtin.file: what is given is compared with what is on disk and changed only where
it differs, with a diff. The mode is the files' mode; the directory gets it with the search bit
added wherever a read bit is set (0640 -> 0750), as `chmod X` would.

QEMU runs as libvirt's DAC user (hypervisor.qemu_owner()). A request that would leave that user
unable to reach an image the VM uses is refused before anything changes: the files a running VM
holds open must stay readable by it (writable, for the image it writes to), and every directory on
the way to any image of the VM's chains must stay searchable by it, running or not (libvirt chowns
images to QEMU's user when it starts a VM, but never directories).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import grp
import os
import pwd
import stat

from ansible_collections.nova.snapshots.plugins.module_utils.adapters._chains import real
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NotFound, Refused
from ansible_collections.nova.snapshots.plugins.module_utils.model._plan import Plan
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import OVERLAY_TYPES

PERMISSIONS_SPEC = dict(
    owner=dict(type='str'),
    group=dict(type='str'),
    mode=dict(type='raw'),
)


def parse_mode(mode):
    """'0640', '640', 0o640 (an int, as YAML gives 0640) -> 0o640; None stays None."""
    if mode is None:
        return None
    if isinstance(mode, int):
        value = mode
    else:
        text = str(mode).strip()
        if not text or any(c not in '01234567' for c in text) or len(text) > 4:
            raise Refused("mode %r is not an octal mode such as '0640' (symbolic modes are not supported)" % (mode,))
        value = int(text, 8)
    if value < 0 or value > 0o777:
        raise Refused("mode %s: only permission bits (0000-0777) are set on snapshot files" % oct(value))
    return value


def dir_mode(mode):
    return mode | ((mode & 0o444) >> 2)


def lookup(owner, group):
    """(uid or None, gid or None) for the names (or numbers) given."""
    uid = gid = None
    if owner is not None:
        try:
            uid = int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
        except KeyError:
            raise NotFound("owner '%s' is not a user on this host" % owner)
    if group is not None:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise NotFound("group '%s' is not a group on this host" % group)
    return uid, gid


def name_of_user(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def name_of_group(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def snapshot_paths(store, snap_id):
    """(directories, files) of the snapshot: its directory and everything directly in it."""
    directory = store.snapshot_dir(snap_id)
    if not os.path.isdir(directory):
        return [], []
    files = sorted(os.path.join(directory, n) for n in os.listdir(directory)
                   if os.path.isfile(os.path.join(directory, n)) and not n.startswith('.'))
    return [directory], files


def describe(path):
    st = os.stat(path)
    return dict(owner=name_of_user(st.st_uid), group=name_of_group(st.st_gid), mode='%04o' % stat.S_IMODE(st.st_mode))


def wanted(path, uid, gid, mode, is_dir):
    st = os.stat(path)
    return (st.st_uid if uid is None else uid, st.st_gid if gid is None else gid,
            stat.S_IMODE(st.st_mode) if mode is None else (dir_mode(mode) if is_dir else mode))


def can(qemu, groups, owner_gid_mode, need):
    """Whether the user (uid, gid) with supplementary `groups` has the `need` bits (4 r, 2 w, 1 x)."""
    uid, gid = qemu
    f_uid, f_gid, f_mode = owner_gid_mode
    if uid == 0:
        return True
    if uid == f_uid:
        bits = (f_mode >> 6) & 7
    elif f_gid == gid or f_gid in groups:
        bits = (f_mode >> 3) & 7
    else:
        bits = f_mode & 7
    return bits & need == need


def qemu_groups(qemu):
    """The groups QEMU's processes have: as libvirt computes them (virGetGroupList), the user's primary
    group and supplementary groups, plus the label's gid."""
    try:
        user = pwd.getpwuid(qemu[0])
        return set(os.getgrouplist(user.pw_name, user.pw_gid)) | set([qemu[1]])
    except (KeyError, OSError):
        return set([qemu[1]])


def images_in_use(m):
    """{real path: bits QEMU needs}: a running VM's open images (rw for the tops it writes, r below);
    for a VM that is off, every image of its definition's chains (QEMU must reach them at the next start)."""
    tops = set(real(p) for p in m.active_tops())
    if m.domain.is_active:
        chain_files = m.open_images()
    else:
        chain_files = set(real(p) for top in tops for p in m.view.chain(top))
    return dict((p, 6 if p in tops else 4) for p in chain_files)


def check_qemu_access(m, changes):
    """Refuse `changes` ({path: (uid, gid, mode)}) that would lock QEMU out of an image the VM uses."""
    qemu = m.hypervisor.qemu_owner() if m.hypervisor is not None else None
    if qemu is None:
        return
    groups = qemu_groups(qemu)
    used = images_in_use(m)
    running = m.domain.is_active
    for path, (uid, gid, mode) in sorted(changes.items(), key=lambda c: (os.path.isdir(c[0]), c[0])):     # files first
        rp = real(path)
        if os.path.isdir(path):
            inside = [u for u in used if u.startswith(rp + os.sep)]
            if inside and not can(qemu, groups, (uid, gid, mode), 1):
                raise Refused("owner/group/mode %s:%s %04o on %s would lock libvirt's QEMU user (uid %d) out of it, and "
                              "domain '%s' needs %s inside; give QEMU's user or group search (x) access, or keep the "
                              "defaults; nothing was changed" % (name_of_user(uid), name_of_group(gid), mode, path,
                                                                 qemu[0], m.domain.name, inside[0]))
        elif running and rp in used and not can(qemu, groups, (uid, gid, mode), used[rp]):
            raise Refused("owner/group/mode %s:%s %04o on %s would lock libvirt's QEMU user (uid %d) out of an image "
                          "running domain '%s' uses (it needs to %s it); give QEMU's user or group that access, or "
                          "change it while the VM is shut off; nothing was changed"
                          % (name_of_user(uid), name_of_group(gid), mode, path, qemu[0], m.domain.name,
                             'read and write' if used[rp] == 6 else 'read'))


def check_new_overlays(m, uid, gid, mode):
    """Before taking a snapshot with overlays: the VM goes on in the new snapshot's directory (it writes
    to the overlays there), so QEMU's user must keep search access to it, and, while the VM runs, read
    and write access to the overlays. Unset owner/group are judged as QEMU's own (the store's default)."""
    qemu = m.hypervisor.qemu_owner() if m.hypervisor is not None else None
    if qemu is None or mode is None and uid in (None, qemu[0]) and gid in (None, qemu[1]):
        return
    groups = qemu_groups(qemu)
    owner = (qemu[0] if uid is None else uid, qemu[1] if gid is None else gid)
    for is_dir, need in ((True, 1), (False, 6)):
        bits = 0o600 if mode is None else (dir_mode(mode) if is_dir else mode)
        if (is_dir or m.domain.is_active) and not can(qemu, groups, owner + (bits,), need):
            raise Refused("owner/group/mode %s:%s %04o would lock libvirt's QEMU user (uid %d) out of the new snapshot's "
                          "%s, which domain '%s' goes on %s; give QEMU's user or group %s access; nothing was changed"
                          % (name_of_user(owner[0]), name_of_group(owner[1]), bits, qemu[0],
                             'directory' if is_dir else 'overlays', m.domain.name,
                             'using' if is_dir else 'writing to', 'search (x)' if is_dir else 'read and write'))


def plan_permissions(m, snap_id, name, uid, gid, mode):
    """Plan setting owner/group/mode on the existing snapshot `snap_id`'s directory and files."""
    dirs, files = snapshot_paths(m.store, snap_id)
    changes = {}
    before, after = {}, {}
    for path in dirs + files:
        st = os.stat(path)
        want = wanted(path, uid, gid, mode, path in dirs)
        if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != want:
            changes[path] = want
            before[path] = describe(path)
            after[path] = dict(owner=name_of_user(want[0]), group=name_of_group(want[1]), mode='%04o' % want[2])
    if not changes:
        return Plan(False)
    check_qemu_access(m, changes)
    actions = ['set permissions of snapshot %s of %s (%d paths: %s)' % (
        name, m.domain.name, len(changes), ', '.join(sorted(set('%s %s:%s %s' % (
            'dir' if p in dirs else 'files', a['owner'], a['group'], a['mode']) for p, a in after.items()))))]

    def apply():
        for path in sorted(changes, key=lambda p: p in dirs):     # files first, the directory last
            want_uid, want_gid, want_mode = changes[path]
            os.chown(path, want_uid, want_gid)
            os.chmod(path, want_mode)
    return Plan(True, actions, before=dict(permissions=before), after=dict(permissions=after), apply=apply)


def with_permissions(m, tree, plan, name, owner, group, mode):
    """`plan` (nova_snapshot state=present) followed by owner/group/mode on the snapshot `name`:
    for a new snapshot, applied right after it is taken; for an existing one, changed where they differ."""
    mode = parse_mode(mode)
    if owner is None and group is None and mode is None:
        return plan
    uid, gid = lookup(owner, group)
    existing = tree.by_name(name)
    if existing is not None:
        perms = plan_permissions(m, existing.id, name, uid, gid, mode)
        if not perms.changed:
            return plan
        perms.snapshot = plan.snapshot
        return Plan(True, perms.actions, before=perms.before, after=perms.after, snapshot=plan.snapshot,
                    apply=lambda: (perms.apply(), plan.snapshot)[1], extra=plan.extra)
    if not plan.changed:
        return plan
    if (plan.after or {}).get('snapshot_type') in OVERLAY_TYPES:
        check_new_overlays(m, uid, gid, mode)
    create = plan.apply

    def apply():
        described = create()
        perms = plan_permissions(m, described['id'], name, uid, gid, mode)
        if perms.changed:
            perms.apply()
        return described
    text = '%s%s%s' % ('owner %s ' % owner if owner else '', 'group %s ' % group if group else '',
                       'mode %04o' % mode if mode is not None else '')
    after = dict(plan.after or {}, permissions=text.strip())
    return Plan(True, plan.actions + ['set permissions of snapshot %s to %s' % (name, text.strip())],
                before=plan.before, after=after, apply=apply, extra=plan.extra)
