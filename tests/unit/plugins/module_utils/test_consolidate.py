# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How consolidation picks its merges: which layers, which way, and the chain they leave.

The planner only asks who holds an image and how big it is, so a table answers for the chain here;
the integration tests run the same planner on real chains of a running guest.
"""

from __future__ import annotations

import pytest

from ansible_collections.nova.snapshots.plugins.module_utils.operations._consolidate import _choose, _merges
from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import Refused


class Info:
    def __init__(self, actual_size, snapshots=(), encrypted=False):
        self.actual_size = actual_size
        self.snapshots = list(snapshots)
        self.raw = {'encrypted': True} if encrypted else {}


class Ctx:
    """holders: image -> who needs it unchanged; sizes: image -> bytes it holds."""

    def __init__(self, holders, sizes, internal=(), encrypted=()):
        self.holders = holders
        self.view = self
        self.sizes = sizes
        self.internal = set(internal)
        self.encrypted = set(encrypted)
        self.kept = {}

    def holder(self, path):
        return self.holders.get(path)

    def info(self, path):
        return Info(self.sizes.get(path, 0), ['x'] if path in self.internal else [], path in self.encrypted)


def plan(chain, holders, sizes=None, method='auto', running=False, internal=(), encrypted=()):
    merges, after = _merges(Ctx(holders, sizes or {}, internal, encrypted), 'vda', chain, method, running)
    return [(m.method, m.upper, m.run, m.below) for m in merges], after


def test_a_chain_of_restore_points_has_nothing_to_merge():
    chain = ['top', 's3', 's2', 's1']
    assert plan(chain, {'s3': 'snap', 's2': 'snap', 's1': 'snap'}) == ([], chain)


def test_runs_between_restore_points_merge_into_the_image_above():
    chain = ['top', 'a1', 'a2', 's2', 'a3', 's1']
    holders = {'s2': 'snap', 's1': 'snap'}
    merges, after = plan(chain, holders, method='pull')
    assert merges == [('pull', 'top', ['a1', 'a2'], 's2'), ('pull', 's2', ['a3'], 's1')]
    assert after == ['top', 's2', 's1']


def test_commit_puts_the_lowest_layer_of_the_run_in_place_of_the_upper_image():
    merges, after = plan(['top', 'a1', 'a2', 'base'], {}, method='commit')
    assert merges == [('commit', 'top', ['a1', 'a2', 'base'], None)]
    assert after == ['base']


def test_auto_copies_the_smaller_side():
    sizes = {'top': 1, 'a1': 50, 'base': 100}
    assert plan(['top', 'a1', 'base'], {}, sizes)[0][0][0] == 'commit'     # 51 down < 150 up
    sizes = {'top': 500, 'a1': 50, 'base': 100}
    assert plan(['top', 'a1', 'base'], {}, sizes)[0][0][0] == 'pull'       # 550 down > 150 up


@pytest.mark.parametrize('method', ['pull', 'auto'])
def test_a_running_vm_commits_below_its_active_image(method):
    """libvirt pulls only into the image the VM writes to."""
    chain = ['top', 's2', 'a1', 's1']
    merges, after = plan(chain, {'s2': 'snap', 's1': 'snap'}, {'s2': 1, 'a1': 100}, method=method, running=True)
    assert merges == [('commit', 's2', ['a1'], 's1')]
    assert after == ['top', 'a1', 's1']


def test_an_image_with_internal_snapshots_is_never_rewritten():
    chain = ['top', 'a1', 'base']
    assert plan(chain, {}, internal={'top'}) == ([], chain)


def test_choose_refuses_nothing_else():
    ctx = Ctx({}, {'top': 1, 'a': 1})
    assert _choose(ctx, 'vda', 'pull', 'top', ['a'], True, True) == 'pull'
    assert _choose(ctx, 'vda', 'commit', 'top', ['a'], True, False) == 'commit'


def test_encrypted_data_is_never_merged_into_a_clear_image():
    """base (clear) <- a1 (clear, anonymous) <- a2 (LUKS, anonymous) <- top (LUKS)."""
    chain, enc = ['top', 'a2', 'a1', 'base'], {'top', 'a2'}
    holders = {'base': 'snap'}
    sizes = {'top': 1, 'a2': 100, 'a1': 100}        # auto would commit (1 + 100 down < 200 up) ...
    merges, _after = plan(chain, holders, sizes, encrypted=enc)
    assert merges == [('pull', 'top', ['a2', 'a1'], 'base')]     # ... into the clear a1: it pulls instead
    with pytest.raises(Refused) as e:
        plan(chain, holders, sizes, method='commit', encrypted=enc)
    assert 'encrypted data' in e.value.msg and 'a1' in e.value.msg
    # running, a frozen upper: libvirt can only commit, which would write a2 into a1 in clear: left as it is
    ctx = Ctx({'base': 'snap', 's1': 'snap'}, sizes, encrypted={'top', 's1', 'a2'})
    merges, after = _merges(ctx, 'vda', ['top', 's1', 'a2', 'a1', 'base'], 'auto', True)
    assert merges == [] and after == ['top', 's1', 'a2', 'a1', 'base']
    assert 'encrypted data into an unencrypted image' in ctx.kept['vda'][0]
    # everything encrypted: nothing stands in the way
    assert plan(chain, holders, sizes, encrypted={'top', 'a2', 'a1'})[0][0][0] == 'commit'
