# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make `import ansible_collections.nova.snapshots...` resolve to this working tree in tests.

.build/src/ansible_collections/nova/snapshots is a symlink to the repository root, so unit tests
always import the code being edited (the integration tests run the installed copy instead).
"""

from __future__ import annotations

import os
import sys

TOP = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(TOP, '.build', 'src')
link = os.path.join(SRC, 'ansible_collections', 'nova', 'snapshots')
if not os.path.islink(link):
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(TOP, link)
sys.path.insert(0, SRC)
# pytest-ansible (--ansible-unit-inject-only, pytest.ini) puts ANSIBLE_COLLECTIONS_PATH on the collection
# finder: the working tree first, so unit tests and in-process module runs use the code being edited.
os.environ.setdefault('ANSIBLE_PYTHON_INTERPRETER', os.path.join(TOP, '.venv', 'bin', 'python'))
os.environ['ANSIBLE_COLLECTIONS_PATH'] = os.pathsep.join(
    [SRC] + [p for p in os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep) if p])
sys.path.insert(0, os.path.join(TOP, 'tests', 'integration'))
