# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stored policies and the shutdown queue: files on disk, validated when read back."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.model._records import InvalidName
from ansible_collections.nova.snapshots.plugins.module_utils.model._policy import PolicyError, parse_policy
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._policy_store import PolicyStore


def test_save_load_names_remove(tmp_path):
    store = PolicyStore(str(tmp_path))
    assert store.names() == [] and store.load('web') is None and store.read_raw('web') is None
    policy = parse_policy(dict(domains=['web-*'], schedule=dict(daily='2:00'), retain=dict(daily=7)), 'web')
    store.save(policy)
    path = os.path.join(str(tmp_path), 'policies', 'web.json')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert store.names() == ['web'] and store.load('web') == policy and store.read_raw('web') == policy
    store.remove('web')
    assert store.names() == []


def test_a_hand_edited_policy_is_validated_when_read(tmp_path):
    store = PolicyStore(str(tmp_path))
    os.makedirs(store.dir)
    with open(store.path('bad'), 'w') as f:
        json.dump(dict(domains=['a'], retain=dict(daily=-2)), f)
    with pytest.raises(PolicyError, match=r"^policy 'bad': retain.daily must be a whole number >= 0, got -2$"):
        store.load('bad')
    with open(store.path('broken'), 'w') as f:
        f.write('{')
    with pytest.raises(PolicyError, match='is not valid JSON'):
        store.load('broken')


def test_policy_names_cannot_leave_the_directory(tmp_path):
    with pytest.raises(InvalidName):
        PolicyStore(str(tmp_path)).remove('../metadata')


def test_shutdown_queue(tmp_path):
    store = PolicyStore(str(tmp_path))
    assert store.queued_since('vm') is None
    os.makedirs(store.queue_dir)
    open(store.queue_path('vm'), 'w').close()
    assert store.queued_since('vm') > 0
    store.dequeue('vm')
    store.dequeue('vm')          # gone already: fine
    assert store.queued_since('vm') is None


def test_domains_by_name_and_glob():
    from ansible_collections.nova.snapshots.plugins.module_utils.operations._enforce import match_domains
    names = ['db-1', 'web-1', 'web-2', 'webby']
    assert match_domains(['web-*'], names) == (['web-1', 'web-2'], [])
    assert match_domains(['db-?', 'mail', 'web-[2]'], names) == (['db-1', 'web-2'], ['mail'])
