# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from ansible_collections.nova.snapshots.plugins.module_utils.model._records import InvalidName, new_id, validate_name


@pytest.mark.parametrize('name', ['base-install', 'web-server-before-update-20231025-001', 'a.b', 'ü' * 127, 'x' * 255])
def test_good_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize('name,fragment', [
    ('', 'non-empty'), ('a/b', "'/'"), ('.x', "starts with '.'"), ('a\0b', 'NUL'), ('<x>', 'XML'),
    ('a"b', 'XML'), ('ü' * 128, '255 bytes'), ('a\nb', 'control'),
])
def test_bad_names(name, fragment):
    with pytest.raises(InvalidName) as e:
        validate_name(name)
    assert fragment in e.value.msg


@given(st.text(max_size=300))
def test_accepted_names_are_safe_everywhere(name):
    try:
        validate_name(name)
    except InvalidName:
        return
    assert '/' not in name and not name.startswith('.') and '\0' not in name
    assert not set('<>&"\'') & set(name) and len(name.encode('utf-8')) <= 255


def test_ids_sort_by_time_and_are_unique():
    ids = [new_id(1700000000 + i) for i in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50
