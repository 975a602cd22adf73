# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure parts of snapshot permissions (modes, QEMU's access) and of the audit record (no secrets)."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils._observe import Session, module_name, touched_snapshots
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._files import replace_file
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused
from ansible_collections.nova.snapshots.plugins.module_utils.operations._permissions import can, dir_mode, parse_mode


@pytest.mark.parametrize('given,want', [('0640', 0o640), ('640', 0o640), (416, 0o640), ('0o750', None), ('u+rw', None),
                                        ('7777', None), (None, None)])
def test_parse_mode(given, want):
    if want is None and given is not None:
        with pytest.raises(Refused):
            parse_mode(given)
    else:
        assert parse_mode(given) == want


@pytest.mark.parametrize('mode,want', [(0o600, 0o700), (0o640, 0o750), (0o644, 0o755), (0o660, 0o770), (0o200, 0o200)])
def test_directories_get_search_where_files_get_read(mode, want):
    assert dir_mode(mode) == want


QEMU = (64055, 64055)
GROUPS = {64055, 107}


@pytest.mark.parametrize('owner_gid_mode,need,want', [
    ((64055, 0, 0o600), 6, True),        # QEMU owns it
    ((0, 0, 0o600), 4, False),           # root's, private
    ((0, 107, 0o640), 4, True),          # QEMU's supplementary group may read
    ((0, 107, 0o640), 6, False),         # ... not write
    ((0, 107, 0o660), 6, True),
    ((0, 0, 0o644), 4, True),            # others may read
    ((0, 0, 0o750), 1, False),           # a directory QEMU cannot search
    ((0, 107, 0o750), 1, True),
    ((64055, 0, 0o077), 4, False),       # the owner's bits count for the owner, not the group's
])
def test_qemu_access(owner_gid_mode, need, want):
    assert can(QEMU, GROUPS, owner_gid_mode, need) is want


def test_a_rewritten_file_keeps_the_mode_it_was_given(tmp_path):
    path = str(tmp_path / 'metadata.json')
    replace_file(path, 'one')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o640)
    replace_file(path, 'two')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640 and open(path).read() == 'two'


class FakeModule:
    """What Session reads of an AnsibleModule."""

    def __init__(self, params, spec, no_log_values=()):
        self.params = params
        self.argument_spec = spec
        self.no_log_values = set(no_log_values)
        self.check_mode = False
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


def test_the_audit_record_holds_no_secret_and_names_who():
    spec = dict(domain={}, name={}, key_file={}, passphrase=dict(no_log=True), note={}, audit={}, audit_context={})
    module = FakeModule(dict(domain='web', state='present', name='s1', key_file='/secure/k', passphrase='hunter2', audit=True,
                             audit_max_size=2 ** 20, audit_keep=3,
                             note='the key is hunter2', audit_context=dict(module='nova_snapshot', awx_job_id=7,
                                                                           awx_user_name='alice', bogus='x')),
                        spec, no_log_values=['hunter2'])
    session = Session(module)
    record = session.record(dict(changed=True, actions=['take snapshot s1 with hunter2']), None)
    text = repr(record)
    assert 'hunter2' not in text and 'passphrase' not in record['parameters']
    assert record['parameters']['key_file'] == '/secure/k'
    assert record['who']['awx_job_id'] == '7' and record['who']['awx_user_name'] == 'alice' and 'bogus' not in record['who']
    assert record['operation'] == 'create' and record['snapshots'] == ['s1'] and record['domain'] == 'web'
    assert 'audit_context' not in record['parameters']


def test_module_name_and_touched_snapshots():
    assert module_name(dict(module='nova.snapshots.nova_chain')) == 'nova_chain'
    assert module_name({}) == module_name(dict(module=None))
    assert touched_snapshots('nova_policy', {}, dict(taken=[dict(name='daily-1')], pruned=[dict(name='daily-0')])) == \
        ['daily-1', 'daily-0']
    assert touched_snapshots('nova_snapshot_tree', {'from': 'base'}, dict(snapshot=dict(name='base'))) == ['base']
