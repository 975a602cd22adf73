# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet: enforcement over 3 simulated hypervisors x 10 VMs, through Ansible over ssh.

The hypervisors are tests/fleet/fleet.sh's (each its own libvirtd, store and sshd); the VMs are
shut off (disk_only snapshots need no RAM), so the figures measure the collection and Ansible,
not QEMU booting. Each round enforces an hourly policy at the next hour: 30 new snapshots.

- fleet_enforce_3x10_forks3_vs_forks1: wall time of one `ansible-playbook nova.snapshots.enforce_policy`
  with forks=3 (ours) vs forks=1 (peer). The ratio is the speed-up's inverse: 0.33 would be 3x.
  (The machine has 2 cores, and the three hosts share them.)
- fleet_enforce_3x10_vs_virsh_ssh: the same forks=3 run vs the same work by hand: per host, one
  ssh session running 10 `virsh snapshot-create-as --disk-only` on 10 twin VMs, the 3 hosts at once.
- fleet_ansible_overhead_per_host: Ansible's own cost per host and task (connect, send the module,
  run it, collect): what one more host adds to a play of one ansible.builtin.ping task with
  forks=1 ((3 hosts - 1 host) / 2, so ansible-playbook's start-up is left out) (ours), vs one
  plain `ssh host true` (peer).
- fleet_ansible_startup: that play on one host (ansible-playbook's start-up plus one host) vs
  the enforce run's wall time with forks=3 (what part of a fleet run is fixed cost).
- fleet_enforce_task_per_host: the enforce task's own time per host (from ansible-runner's events)
  with forks=1 (ours) vs the playbook's wall time divided by 3 (peer): what the play adds around it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import TOP, report  # first: it puts the collection and the test bed on sys.path

sys.path.insert(0, os.path.join(TOP, 'tests', 'fleet'))
import fleetbed  # noqa: E402

ROUNDS = int(os.environ.get('NOVA_BENCH_ROUNDS', '3'))
VMS = int(os.environ.get('NOVA_BENCH_FLEET_VMS', '10'))
ENV = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(TOP, '.build', 'collections'), ANSIBLE_NOCOLOR='1',
           ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_DEPRECATION_WARNINGS='False')
PLAYBOOK = os.path.join(TOP, '.venv', 'bin', 'ansible-playbook')


def playbook(inv, args, forks):
    start = time.perf_counter()
    proc = subprocess.run([PLAYBOOK, '-i', inv, '-f', str(forks)] + args, env=ENV, capture_output=True, text=True,
                          check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError('ansible-playbook failed:\n%s\n%s' % (proc.stdout[-3000:], proc.stderr[-2000:]))
    return took


def enforce(inv, hour, forks):
    return playbook(inv, ['nova.snapshots.enforce_policy', '-e', 'nova_enforce_now=2026-11-25T%02d:00:00Z' % hour,
                          '-e', 'nova_snapshot_retention_show=false'], forks)


def ssh(host, command):
    return subprocess.Popen(['ssh', '-i', os.path.join(fleetbed.FLEET_DIR, 'id_ed25519'), '-o', 'BatchMode=yes',
                             '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
                             '-o', 'LogLevel=ERROR', 'root@' + host.addr, command],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def by_hand(hosts, twins, hour):
    """10 virsh disk-only snapshots per host, one ssh session per host, the hosts at once."""
    start = time.perf_counter()
    procs = [ssh(h, ' && '.join('virsh -q -c qemu:///system snapshot-create-as %s by-hand-%02d --disk-only --atomic'
                                % (g.name, hour) for g in twins[h.name])) for h in hosts]
    for p in procs:
        err = p.communicate()[1]
        if p.returncode != 0:
            raise RuntimeError('virsh over ssh failed: %s' % err)
    return time.perf_counter() - start


def main():
    fleetbed.fleet('up', 3)
    hosts = [fleetbed.Host('hv%d' % i) for i in (1, 2, 3)]
    made = []
    tmp = tempfile.mkdtemp(prefix='nova-bench-fleet-')
    try:
        vms, twins = {}, {}
        for h in hosts:
            vms[h.name] = [fleetbed.FleetGuest(h, name='novatest-bench-%s-p%02d' % (h.name, i)) for i in range(VMS)]
            twins[h.name] = [fleetbed.FleetGuest(h, name='novatest-bench-%s-v%02d' % (h.name, i)) for i in range(VMS)]
            made += vms[h.name] + twins[h.name]
        policy = {'name': 'bench', 'domains': ['novatest-bench-*-p*'], 'snapshot_type': 'disk_only',
                  'schedule': {'hourly': True}, 'retain': {'hourly': 1000}, 'naming': '{vm}-{purpose}-{time}'}
        inv = fleetbed.write_inventory(os.path.join(tmp, 'inventory'), hosts, {'nova_snapshot_policies': [policy]})
        with open(os.path.join(tmp, 'ping.yml'), 'w') as f:
            f.write('- hosts: hypervisors\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n')

        enforce(inv, 0, 3)                         # warm-up: first snapshot of each VM, ssh keys, caches
        by_hand(hosts, twins, 0)
        f3, f1, hand, ping, bare, startup = [], [], [], [], [], []
        hour = 1
        for _round in range(ROUNDS):
            f3.append(enforce(inv, hour, 3))
            hand.append(by_hand(hosts, twins, hour))
            hour += 1
            f1.append(enforce(inv, hour, 1))
            hour += 1
            three = playbook(inv, [os.path.join(tmp, 'ping.yml')], 1)
            one = playbook(inv, [os.path.join(tmp, 'ping.yml'), '-l', 'hv1'], 1)
            ping.append((three - one) / (len(hosts) - 1))
            startup.append(one)
            for h in hosts:
                start = time.perf_counter()
                ssh(h, 'true').communicate()
                bare.append(time.perf_counter() - start)
        for h in hosts:                            # every round really took its snapshots
            got = h.libvirt_snapshots(vms[h.name][0].name)
            assert len(got) == 1 + 2 * ROUNDS, got
        job = fleetbed.run_job(tmp, 'nova.snapshots.enforce_policy', inv, {'nova_enforce_now': '2026-11-26T00:00:00Z',
                                                                           'nova_snapshot_retention_show': False},
                               forks=1)
        spans = job.intervals('Enforce the declared policies')
        task = [e - s for s, e in spans.values()]
        report('fleet_enforce_3x%d_forks3_vs_forks1' % VMS, f3, f1)
        report('fleet_enforce_3x%d_vs_virsh_ssh' % VMS, f3, hand)
        report('fleet_ansible_overhead_per_host', ping, bare)
        report('fleet_ansible_startup', startup, f3)
        report('fleet_enforce_task_per_host', task, [statistics.median(f1) / len(hosts)])
        print('# fleet: %d hosts x %d shut-off VMs, %d rounds, %d new snapshots per enforce run; load average %.1f'
              % (len(hosts), VMS, ROUNDS, len(hosts) * VMS, os.getloadavg()[0]), flush=True)
    finally:
        for g in made:
            g.cleanup()
        for h in hosts:
            h.close()
        if os.environ.get('NOVA_FLEET_KEEP') != '1':
            fleetbed.fleet('down')
        subprocess.run(['rm', '-rf', tmp], check=False)


if __name__ == '__main__':
    main()
