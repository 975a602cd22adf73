# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova_policy: retention planning at scale, and enforcing a policy on many VMs vs virsh.

- retention_plan_100k: the pure planner over 100,000 snapshot records (eleven years of hourly
  snapshots, each daily/weekly/monthly one tagged as such). Goal: under a second. No peer; the
  line prints the goal as `limit`.
- retention_from_tree_100k: the same, starting from a tree of 100,000 snapshot records (reading
  each one's tags, as enforcing does).
- enforce_policy_<n>vms: one enforcement of an hourly disk-only policy over n paused VMs (one new
  snapshot each), by the module core (plan, lock, create, store per VM, one libvirt connection),
  vs n `virsh snapshot-create-as --disk-only --atomic` calls on n twin VMs.
- enforce_policy_<n>vms_task: the same enforcement as one ansible-playbook task (Ansible's start-up
  included) vs the same n virsh calls. Goal: within 3x.

The VMs are started paused: QEMU runs, so the snapshots are live ones made through QEMU, but no
guest boots (n TCG guests booting on two cores would take minutes).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import libvirt

from common import URI, report, run_command, timed, virsh  # first: it puts the collection and the test bed on sys.path
import testbed
from ansible_collections.nova.snapshots.plugins.module_utils.operations._enforce import Enforcer, own_records  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._libvirt import Hypervisor  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.model._records import SnapshotDisk, VmSnapshot  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.model._policy import parse_policy, policy_tags  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._policy_store import PolicyStore  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.adapters._qemu_img import QemuImg  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.model._retention import Record, plan_retention  # noqa: E402
from ansible_collections.nova.snapshots.plugins.module_utils.model._tree import Tree  # noqa: E402

ROUNDS = int(os.environ.get('NOVA_BENCH_ROUNDS', '3'))
VMS = int(os.environ.get('NOVA_BENCH_POLICY_VMS', '20'))
RECORDS = 100000
RETAIN = {'hourly': 24, 'daily': 7, 'weekly': 4, 'monthly': 12, 'yearly': 3}
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def periods_at(hour):
    """The periods an hourly schedule with daily 02:00, weekly Sunday 03:00 ... would tag at `hour`."""
    t = T0 + datetime.timedelta(hours=hour)
    out = ['hourly']
    if t.hour == 2:
        out.append('daily')
    if t.weekday() == 6 and t.hour == 3:
        out.append('weekly')
    if t.day == 1 and t.hour == 4:
        out.append('monthly')
    if t.month == 1 and t.day == 1 and t.hour == 5:
        out.append('yearly')
    return out


def bench_retention():
    base = T0.timestamp()
    records = [Record('s%06d' % h, base + h * 3600, periods_at(h)) for h in range(RECORDS)]
    now = base + RECORDS * 3600
    times = [timed(lambda: plan_retention(records, RETAIN, now)) for _round in range(ROUNDS)]
    print('retention_plan_100k: ours=%.6f limit=1.000' % statistics.median(times), flush=True)

    snaps = [VmSnapshot('id%06d' % h, 'vm', 's%06d' % h, 'disk_only', int(base + h * 3600), 'running',
                        [SnapshotDisk('vda', '/s/%06d.qcow2' % h)], parent_snapshot='id%06d' % (h - 1) if h else None,
                        tags=policy_tags('bench', periods_at(h), [], base + h * 3600), category='policy')
             for h in range(RECORDS)]
    tree = Tree('vm', snaps)
    times = [timed(lambda: plan_retention(own_records(tree, 'bench')[0], RETAIN, now)) for _round in range(ROUNDS)]
    print('retention_from_tree_100k: ours=%.6f limit=1.000' % statistics.median(times), flush=True)


def start_paused(guests):
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda g: g.dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED), guests))


def cleanup(guests):
    # stopping a QEMU process takes libvirt about a second: 40 of them one by one would dominate the run
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda g: g.cleanup(), guests))


def enforce_core(policy, store_dir, now):
    hypervisor = Hypervisor(URI)
    try:
        enforcer = Enforcer(hypervisor, store_dir, QemuImg(run_command), PolicyStore(store_dir), now)
        result = enforcer.enforce([policy])
    finally:
        hypervisor.close()
    assert len(result['taken']) == len(policy['domains']), result
    return result


def enforce_task(work, policy, store_dir, now):
    """One ansible-playbook task enforcing the policy, the way a timer or AWX runs it."""
    args = dict((k, v) for k, v in policy.items() if k not in ('domains',))
    args.update(domains=policy['domains'], state='enforced', now=now.isoformat(), storage_dir=store_dir)
    playbook = os.path.join(work, 'enforce.yml')
    with open(playbook, 'w') as f:
        json.dump([{'hosts': 'localhost', 'gather_facts': False,
                    'tasks': [{'nova.snapshots.nova_policy': args}]}], f)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=testbed.COLLECTIONS,
               ANSIBLE_PYTHON_INTERPRETER=os.path.join(testbed.TOP, '.venv', 'bin', 'python'),
               ANSIBLE_LOCALHOST_WARNING='False', ANSIBLE_INVENTORY_UNPARSED_WARNING='False')
    subprocess.run([os.path.join(testbed.TOP, '.venv', 'bin', 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
                    playbook], env=env, check=True, capture_output=True)


def virsh_round(twins, r):
    for twin in twins:
        directory = os.path.join(twin.dir, 'virsh-%d' % r)
        os.makedirs(directory)
        virsh('snapshot-create-as', twin.name, 's%d' % r, '--disk-only', '--atomic',
              '--diskspec', 'vda,file=%s/disk_vda.qcow2,snapshot=external' % directory)


def bench_enforce(conn):
    guests = [testbed.Guest(conn, disks=1) for _vm in range(VMS)]
    twins = [testbed.Guest(conn, disks=1) for _vm in range(VMS)]
    store_dir = os.path.join(testbed.WORK_DIR, 'bench-policy-store-%d' % os.getpid())
    try:
        start_paused(guests + twins)
        policy = parse_policy(dict(domains=[g.name for g in guests], snapshot_type='disk_only',
                                   schedule=dict(hourly=True), retain=dict(hourly=1000)), 'bench')
        mine, task, peer = [], [], []
        for r in range(ROUNDS):
            mine.append(timed(lambda: enforce_core(policy, store_dir, T0 + datetime.timedelta(hours=r))))
            peer.append(timed(lambda: virsh_round(twins, r)))
        for r in range(ROUNDS):
            now = T0 + datetime.timedelta(hours=ROUNDS + r)
            task.append(timed(lambda: enforce_task(testbed.WORK_DIR, policy, store_dir, now)))
            peer.append(timed(lambda: virsh_round(twins, ROUNDS + r)))
        report('enforce_policy_%dvms' % VMS, mine, peer[:ROUNDS])
        report('enforce_policy_%dvms_task' % VMS, task, peer[ROUNDS:])
    finally:
        cleanup(guests + twins)
        shutil.rmtree(store_dir, ignore_errors=True)
        if os.path.exists(os.path.join(testbed.WORK_DIR, 'enforce.yml')):
            os.unlink(os.path.join(testbed.WORK_DIR, 'enforce.yml'))


def main(conn=None):
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    os.makedirs(testbed.WORK_DIR, exist_ok=True)
    bench_retention()
    bench_enforce(conn or libvirt.open(URI))


if __name__ == '__main__':
    start = time.time()
    main()
    print('# bench_policy took %.0f s' % (time.time() - start))
