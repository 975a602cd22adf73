# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet test bed: several hypervisors on this machine (tests/fleet/fleet.sh), their guests,
an inventory for them, and playbooks run through ansible-runner the way AWX runs jobs.

A host is a mount namespace with its own libvirtd, store and sshd (see fleet.sh). Ansible reaches
it over ssh and sees default paths; the tests reach its libvirtd through its socket and its files
through the host's directory, translating the paths the host sees (`inside`) to the machine's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import libvirt
import yaml
from lxml import etree

import testbed

HERE = os.path.dirname(os.path.abspath(__file__))
FLEET_SH = os.path.join(HERE, 'fleet.sh')
FLEET_DIR = os.environ.get('NOVA_FLEET_DIR', '/var/lib/nova-fleet')
# What the host sees -> its directory's sub-directory (as in fleet.sh).
MOUNTS = {'/run/libvirt': 'run-libvirt', '/var/lib/libvirt': 'lib-libvirt', '/var/cache/libvirt': 'cache-libvirt',
          '/var/log/libvirt': 'log-libvirt', '/etc/libvirt': 'etc-libvirt', '/var/lib/nova': 'lib-nova',
          '/var/lib/nova-guests': 'guests'}
GUESTS = '/var/lib/nova-guests'
STORE = '/var/lib/nova/snapshots'


def fleet(*args, check=True, timeout=300):
    proc = subprocess.run([FLEET_SH] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError('fleet.sh %s failed (rc=%d):\n%s%s' % (' '.join(map(str, args)), proc.returncode,
                                                                    proc.stdout, proc.stderr))
    return proc


class Host:
    """One simulated hypervisor."""

    def __init__(self, name):
        self.name = name
        self.dir = os.path.join(FLEET_DIR, name)
        self.addr = '127.0.0.%d' % (10 + int(name[2:]))
        self.uri = 'qemu+unix:///system?socket=%s/run-libvirt/libvirt-sock' % self.dir
        self._conn = None

    def __repr__(self):
        return 'Host(%s)' % self.name

    def outside(self, path):
        """The machine's path of a file the host sees at `path`."""
        for inside, sub in MOUNTS.items():
            if path == inside or path.startswith(inside + '/'):
                return os.path.join(self.dir, sub) + path[len(inside):]
        return path

    @property
    def conn(self):
        if self._conn is None:
            self._conn = libvirt.open(self.uri)
        return self._conn

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._conn = None

    def exec(self, *cmd, check=True):
        return fleet('exec', self.name, *cmd, check=check)

    def stop_libvirt(self):
        self.close()
        fleet('stop', self.name)

    def start_libvirt(self):
        fleet('start', self.name)

    def domain_names(self):
        return sorted(d.name() for d in self.conn.listAllDomains())

    def store_meta(self, domain):
        """The store's metadata.json of a domain on this host, or None."""
        path = self.outside(os.path.join(STORE, domain, 'metadata.json'))
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def libvirt_snapshots(self, domain):
        return sorted(s.getName() for s in self.conn.lookupByName(domain).listAllSnapshots(0))


class FleetGuest(testbed.Guest):
    """A test guest defined on one fleet host (disks in the host's /var/lib/nova-guests)."""

    def __init__(self, host, disks=1, disk_mib=16, agent=False, name=None):   # pylint: disable=super-init-not-called
        self.host = host
        self.conn = host.conn
        self.name = name or testbed.PREFIX + uuid.uuid4().hex[:8]
        self.inside_dir = os.path.join(GUESTS, self.name)
        self.dir = host.outside(self.inside_dir)
        os.makedirs(self.dir, mode=0o755)
        self.disks = {}
        for i in range(disks):
            dev = 'vd' + 'abcdefghij'[i]
            path = os.path.join(self.inside_dir, '%s.qcow2' % dev)
            subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', host.outside(path), '%dM' % disk_mib],
                           check=True)
            self.disks[dev] = path
        self.console_path = os.path.join(self.dir, 'console.log')
        self.sock_path = os.path.join(self.dir, 'cmd.sock')
        self.dom = self.conn.defineXML(testbed.domain_xml(self.name, self.disks, self.inside_dir, memory_mib=128,
                                                          agent=agent))
        self._boots_seen = 0

    def refresh(self):
        """After the host's libvirtd restarted: a new connection and domain handle."""
        self.conn = self.host.conn
        self.dom = self.conn.lookupByName(self.name)

    def tops(self):
        """Per disk, the image the domain's (inactive) XML writes to, as the host sees it."""
        root = etree.fromstring(self.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        return dict((disk.find('target').get('dev'), disk.find('source').get('file'))
                    for disk in root.findall('devices/disk'))

    # Markers on shut-off guests: one byte pattern per step (at step MiB, a qcow2 cluster of its own), written and read with qemu-io inside
    # the host (the backing paths in the overlays are the host's).
    def write_pattern(self, dev, step):
        self.host.exec('qemu-io', '-f', 'qcow2', '-c', 'write -q -P %d %d 512' % (step, step << 20),
                       self.tops()[dev])

    def patterns(self, dev, upto=6):
        """Which steps' patterns the disk holds now (read through its whole backing chain)."""
        found = []
        for step in range(1, upto + 1):
            proc = self.host.exec('qemu-io', '-r', '-U', '-f', 'qcow2', '-c', 'read -P %d %d 512' % (step, step << 20),
                                  self.tops()[dev], check=False)
            if proc.returncode == 0 and 'Pattern verification failed' not in proc.stdout + proc.stderr:
                found.append(step)
        return found

    def cleanup(self):
        try:
            testbed.destroy_domain(self.host.conn, self.name)
        except libvirt.libvirtError:
            pass    # the host is down: fleet.sh down removes it with the host
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.host.outside(os.path.join(STORE, self.name)), ignore_errors=True)


def write_inventory(path, hosts, group_vars=None, host_vars=None):
    """An inventory directory for `hosts`: hosts.yml, group_vars/hypervisors.yml, host_vars/<host>.yml."""
    os.makedirs(os.path.join(path, 'group_vars'), exist_ok=True)
    os.makedirs(os.path.join(path, 'host_vars'), exist_ok=True)
    key = os.path.join(FLEET_DIR, 'id_ed25519')
    inv = {'all': {'children': {'hypervisors': {
        'hosts': dict((h.name, {'ansible_host': h.addr}) for h in hosts),
        'vars': {
            'ansible_connection': 'ssh', 'ansible_user': 'root', 'ansible_ssh_private_key_file': key,
            'ansible_ssh_common_args': '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR',
            'ansible_python_interpreter': '/usr/bin/python3',
        }}}}}
    with open(os.path.join(path, 'hosts.yml'), 'w') as f:
        yaml.safe_dump(inv, f)
    with open(os.path.join(path, 'group_vars', 'hypervisors.yml'), 'w') as f:
        yaml.safe_dump(group_vars or {}, f)
    for name, hv in (host_vars or {}).items():
        with open(os.path.join(path, 'host_vars', '%s.yml' % name), 'w') as f:
            yaml.safe_dump(hv, f)
    return os.path.join(path, 'hosts.yml')


class Job:
    """What an AWX job would keep of an ansible-runner run: status, rc, recap, artifacts."""

    def __init__(self, runner):
        self.runner = runner
        self.status = runner.status
        self.rc = runner.rc
        self.stats = runner.stats or {}
        self.events = list(runner.events)
        done = [e for e in self.events if e.get('event') == 'playbook_on_stats']
        self.artifacts = done[-1]['event_data'].get('artifact_data', {}) if done else {}
        self.stdout = runner.stdout.read()

    @property
    def result(self):
        return self.artifacts.get('nova_result', {})

    def failed_hosts(self):
        return sorted(set(self.stats.get('failures', {})) | set(self.stats.get('dark', {})))

    def ok_hosts(self):
        return sorted(h for h in self.stats.get('ok', {}) if h not in self.failed_hosts())

    def task_results(self, task_name):
        """Per host, the result of the task of that name (runner_on_ok / runner_on_failed events)."""
        out = {}
        for e in self.events:
            data = e.get('event_data', {})
            if e.get('event') in ('runner_on_ok', 'runner_on_failed') and data.get('task') == task_name:
                out[data['host']] = data.get('res', {})
        return out

    def module_calls(self, module):
        """Per host, how many times the module ran (each item of a loop counts, skipped ones not)."""
        out = {}
        for e in self.events:
            data = e.get('event_data', {})
            if e.get('event') in ('runner_on_ok', 'runner_on_failed') and \
                    (data.get('resolved_action') or data.get('task_action') or '').endswith(module):
                res = data.get('res', {})
                calls = len([r for r in res['results'] if not r.get('skipped')]) if 'results' in res else 1
                out[data['host']] = out.get(data['host'], 0) + calls
        return out

    def intervals(self, task_name):
        """Per host, (start, end) in seconds of the task of that name, from the job's events."""
        import datetime
        start, end = {}, {}
        for e in self.events:
            data = e.get('event_data', {})
            if data.get('task') != task_name or 'created' not in e:
                continue
            t = datetime.datetime.fromisoformat(e['created']).timestamp()
            if e['event'] == 'runner_on_start':
                start[data['host']] = t
            elif e['event'] in ('runner_on_ok', 'runner_on_failed', 'runner_on_skipped', 'runner_on_unreachable'):
                end[data['host']] = t
        return dict((h, (start[h], end[h])) for h in start if h in end)

    def batches(self, task_name):
        """How many times the play started the task (one per serial batch)."""
        return len([e for e in self.events if e.get('event') == 'playbook_on_task_start'
                    and e.get('event_data', {}).get('task') == task_name])


def run_job(tmp_path, playbook, inventory, extravars=None, forks=5, limit=None, check=False, timeout=600,
            play=None):
    """Run a playbook of the collection through ansible_runner.run() the way AWX does: a project
    directory whose playbook imports the collection's, the job's extra vars, forks, limit.
    With `play` (a list of plays), that playbook instead (for the tests' own set-up steps)."""
    import ansible_runner
    data = os.path.join(str(tmp_path), 'runner-%s' % uuid.uuid4().hex[:6])
    project = os.path.join(data, 'project')
    os.makedirs(project)
    name = playbook.split('.')[-1] + '.yml'
    with open(os.path.join(project, name), 'w') as f:
        yaml.safe_dump(play or [{'name': 'AWX project playbook', 'ansible.builtin.import_playbook': playbook}], f)
    cmdline = '--check' if check else None
    r = ansible_runner.run(
        private_data_dir=data, playbook=name, inventory=inventory, extravars=extravars or {},
        forks=forks, limit=limit, quiet=True, timeout=timeout, cmdline=cmdline,
        envvars=runner_env())
    return Job(r)


def runner_env():
    """The environment of an ansible-runner job: the collection under test, the project's venv."""
    return {'ANSIBLE_COLLECTIONS_PATH': testbed.COLLECTIONS,
            'PATH': os.path.join(testbed.TOP, '.venv', 'bin') + os.pathsep + os.environ.get('PATH', ''), 'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_HOST_KEY_CHECKING': 'False', 'ANSIBLE_DEPRECATION_WARNINGS': 'False'}


def run_tasks(tmp_path, inventory, host, tasks):
    """Run tasks on one fleet host over ssh (set-up steps of a test); fails the test if they fail."""
    job = run_job(tmp_path, 'setup', inventory, play=[{'hosts': host.name, 'gather_facts': False, 'tasks': tasks}])
    assert job.status == 'successful', job.stdout[-3000:]
    return job
