# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scratch directories (adapters/_scratch.py): one a killed process left is removed by the next
make() of its kind; one whose process still runs, or that is not a locked scratch, stays."""

from __future__ import annotations

import os

from ansible_collections.nova.snapshots.plugins.module_utils.adapters import _scratch


def made_by_a_process_that_dies(parent, prefix):
    """The path of a scratch directory (with a file in it) whose process was killed."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        path = _scratch.make(prefix, parent)
        with open(os.path.join(path, 'memory.save'), 'w') as f:
            f.write('clear RAM')
        os.write(w, path.encode())
        os.kill(os.getpid(), 9)
    os.close(w)
    path = os.read(r, 4096).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return path


def test_a_killed_process_scratch_goes_with_the_next_make_and_a_live_one_stays(tmp_path):
    parent = str(tmp_path)
    dead = made_by_a_process_that_dies(parent, 'nova-mem-')
    assert os.path.exists(os.path.join(dead, 'memory.save'))
    other_kind = made_by_a_process_that_dies(parent, 'nova-merge-')
    kept = os.path.join(parent, 'nova-mem-save-abc')       # a switch's RAM kept for its re-run: no .owner
    os.mkdir(kept)
    mine = _scratch.make('nova-mem-', parent)
    assert oct(os.stat(mine).st_mode & 0o777) == '0o700'
    assert not os.path.exists(dead) and os.path.isdir(kept) and os.path.isdir(other_kind)

    again = _scratch.make('nova-mem-', parent)      # ours is alive: the sweep leaves it
    assert os.path.isdir(mine) and os.path.isdir(again)
    _scratch.remove(mine)
    _scratch.remove(again)
    assert sorted(os.listdir(parent)) == sorted([os.path.basename(kept), os.path.basename(other_kind)])


def test_the_scratch_of_a_process_that_runs_stays(tmp_path):
    parent = str(tmp_path)
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        path = _scratch.make('nova-mem-', parent)
        os.write(w, path.encode())
        os.read(go_r, 1)            # runs until the parent has swept
        os._exit(0)
    os.close(w)
    path = os.read(r, 4096).decode()
    _scratch.sweep('nova-mem-', parent)
    assert os.path.isdir(path)
    os.write(go_w, b'x')
    os.waitpid(pid, 0)
    _scratch.sweep('nova-mem-', parent)
    assert not os.path.exists(path)
