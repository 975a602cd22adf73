# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real-hypervisor test bed: throwaway domains running the tiny test guest.

The guest (tests/guest/init) prints "tick N" on its console every second, which proves RAM
state, and answers commands on a second serial port (a unix socket here), which read and write
marker bytes on its disks and so prove disk state. Nothing here mocks libvirt or QEMU.
"""

from __future__ import annotations

import itertools
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid

import libvirt
from lxml import etree

URI = 'qemu:///system'
# The web-server snapshot tree of the nova design: (snapshot, parent, step that writes its marker).
WEB_SERVER_TREE = [
    ('base-install', None, 1),
    ('security-updates', 'base-install', 2),
    ('app-v1.0', 'security-updates', 3),
    ('app-v1.1', 'app-v1.0', 4),
    ('testing-branch', 'app-v1.0', 5),
    ('experimental-feature', 'testing-branch', 6),
    ('minimal-config', 'base-install', 7),
    ('production-ready', 'minimal-config', 8),
]
GUEST_DIR = os.environ.get('NOVA_TEST_GUEST_DIR', '/var/cache/nova-snapshots/guest')
WORK_DIR = os.environ.get('NOVA_TEST_WORK_DIR', '/var/lib/nova-test')
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(TOP, '.build', 'collections')
PREFIX = 'novatest-'
DEFAULT_STORE = '/var/lib/nova/snapshots'


class GuestError(AssertionError):
    """The test guest did not do what the test bed asked (a failed test, not a broken run)."""


def _sub(parent, tag, text=None, **attrs):
    node = etree.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        node.text = str(text)
    return node


def file_sha256(path):
    """SHA-256 of a file on the host, read in 1 MiB blocks (images are larger than a test wants in RAM)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def domain_xml(name, disks, directory, memory_mib=192, agent=True):
    """The test guest's domain XML: TCG, direct kernel boot, console to a file, command socket."""
    dom = etree.Element('domain', type='qemu')
    _sub(dom, 'name', name)
    _sub(dom, 'memory', memory_mib, unit='MiB')
    _sub(dom, 'vcpu', 1)
    os_ = _sub(dom, 'os')
    _sub(os_, 'type', 'hvm', arch='x86_64', machine='pc')
    _sub(os_, 'kernel', os.path.join(GUEST_DIR, 'vmlinuz'))
    _sub(os_, 'initrd', os.path.join(GUEST_DIR, 'initrd.img'))
    _sub(os_, 'cmdline', 'console=ttyS0 quiet panic=-1')
    _sub(dom, 'on_reboot', 'destroy')
    devices = _sub(dom, 'devices')
    for dev, path in disks.items():
        disk = _sub(devices, 'disk', type='file', device='disk')
        _sub(disk, 'driver', name='qemu', type='qcow2')
        _sub(disk, 'source', file=path)
        _sub(disk, 'target', dev=dev, bus='virtio')
    console = _sub(devices, 'serial', type='file')
    _sub(console, 'source', path=os.path.join(directory, 'console.log'), append='on')
    _sub(console, 'target', port=0)
    command = _sub(devices, 'serial', type='unix')
    _sub(command, 'source', mode='bind', path=os.path.join(directory, 'cmd.sock'))
    _sub(command, 'target', port=1)
    if agent:
        channel = _sub(devices, 'channel', type='unix')
        _sub(channel, 'target', type='virtio', name='org.qemu.guest_agent.0')
    _sub(devices, 'memballoon', model='none')
    return etree.tostring(dom, encoding='unicode')


def owner_alive(name):
    """Whether the process that made the test domain `name` is still running."""
    try:
        with open(os.path.join(WORK_DIR, name, 'owner.pid')) as f:
            os.kill(int(f.read()), 0)
        return True
    except (OSError, ValueError):
        return False


class Guest:
    """A throwaway domain of the test guest. Use through the `make_guest` fixture."""

    _ids = itertools.count(1)

    def __init__(self, conn, disks=1, disk_mib=64, agent=True):
        self.conn = conn
        self.name = PREFIX + uuid.uuid4().hex[:8]
        self.dir = os.path.join(WORK_DIR, self.name)
        self.storage_dir = os.path.join(self.dir, 'store')
        os.makedirs(self.dir, mode=0o755)
        with open(os.path.join(self.dir, 'owner.pid'), 'w') as f:
            f.write(str(os.getpid()))
        self.disks = {}
        for i in range(disks):
            dev = 'vd' + 'abcdefghij'[i]
            path = os.path.join(self.dir, '%s.qcow2' % dev)
            subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', path, '%dM' % disk_mib], check=True)
            self.disks[dev] = path
        self.console_path = os.path.join(self.dir, 'console.log')
        self.sock_path = os.path.join(self.dir, 'cmd.sock')
        self.dom = conn.defineXML(domain_xml(self.name, self.disks, self.dir, agent=agent))
        self._boots_seen = 0

    def redefine(self, edit):
        """Change the persistent definition: edit(root) gets the domain XML's lxml root to change."""
        root = etree.fromstring(self.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
        edit(root)
        self.dom = self.conn.defineXML(etree.tostring(root, encoding='unicode'))

    # -- life cycle ---------------------------------------------------------------------------
    @property
    def state(self):
        return {libvirt.VIR_DOMAIN_RUNNING: 'running', libvirt.VIR_DOMAIN_PAUSED: 'paused',
                libvirt.VIR_DOMAIN_SHUTOFF: 'shutoff'}.get(self.dom.state()[0], 'other')

    def start(self):
        self.dom.create()
        self.wait_ready()

    def stop(self):
        if self.dom.isActive():
            self.dom.destroy()

    def wait_ready(self, timeout=60, limit=300):
        """Wait for the guest's next 'ready' line after a boot; fail if a disk is not a block device.

        `timeout` counts from the console's last new output: a guest that boots in 3 s alone takes
        minutes when other guests hold the two cores (a fresh-machine run beside three sessions'
        tests saw load 14), and is slow, not hung, as long as it keeps printing; `limit` caps it. The
        longest silence is before a boot's first line (firmware, kernel and initrd under TCG): CI saw
        a restarted guest print nothing for 60 s, so the wait for that first line is twice as long."""
        want = self._boots_seen + 1
        start = time.time()
        deadline, seen = start + 2 * timeout, len(self.console())
        while time.time() < min(deadline, start + limit):
            text = self.console()
            if len(text) != seen:
                seen, deadline = len(text), time.time() + timeout
            if 'nova-guest: ERROR' in text:
                raise GuestError('guest reported: %s' % re.findall(r'nova-guest: ERROR.*', text))
            ready = re.findall(r'nova-guest: ready disks=(.*) agent=(\S+)', text)
            if len(ready) >= want:
                self._boots_seen = len(ready)
                disks, agent = ready[-1]
                if disks.split() != sorted(self.disks):
                    raise GuestError('guest sees disks %r, defined %r' % (disks, sorted(self.disks)))
                self.agent_port = agent
                return
            time.sleep(0.2)
        raise GuestError('guest %s (%s) not ready after %.0f s (%d s without new console output at most); console:\n%s'
                         % (self.name, self.state, time.time() - start, timeout, self.console()[-2000:]))

    def note_restored(self):
        """A restore from a memory image does not boot, so the next ready line is a new boot's."""
        self._boots_seen = len(re.findall(r'nova-guest: ready', self.console()))

    # -- RAM counter --------------------------------------------------------------------------
    def console(self):
        try:
            with open(self.console_path, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def tick(self):
        """The guest's latest counter value (None before the first)."""
        ticks = re.findall(r'^tick (\d+)', self.console(), re.M)
        return int(ticks[-1]) if ticks else None

    def ticks_since(self, offset):
        return [int(t) for t in re.findall(r'^tick (\d+)', self.console()[offset:], re.M)]

    def wait_tick(self, at_least, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            t = self.tick()
            if t is not None and t >= at_least:
                return t
            time.sleep(0.2)
        raise GuestError('counter did not reach %d (at %r)' % (at_least, self.tick()))

    # -- disk markers -------------------------------------------------------------------------
    def command(self, *words, timeout=30, attempt=5):
        """Send one command; resend it (under a new id) when no reply comes within `attempt` seconds.

        Every command is idempotent, and a serial line can lose a request (e.g. sent while the
        guest reopens the port), so resending is safe and keeps one lost line from failing a test.
        """
        deadline = time.time() + timeout
        while time.time() < deadline:
            reply = self._command_once(words, min(attempt, max(0.1, deadline - time.time())))
            if reply is not None:
                return reply
        raise GuestError('no reply from guest %s to %r within %ss' % (self.name, words, timeout))

    def _command_once(self, words, timeout):
        req = str(next(self._ids))
        line = (' '.join([req] + [str(w) for w in words]) + '\n').encode()
        deadline = time.time() + timeout
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.sock_path)
            s.sendall(line)
            buf = b''
            while time.time() < deadline:
                try:
                    chunk = s.recv(4096)
                except socket.timeout:
                    return None
                if not chunk:
                    return None
                buf += chunk
                for reply in buf.split(b'\n')[:-1]:
                    parts = reply.decode(errors='replace').split()
                    if parts and parts[0] == req:
                        if parts[1] != 'ok':
                            raise GuestError('guest refused %r: %s' % (words, reply))
                        return parts[2:]
                s.settimeout(max(0.1, deadline - time.time()))
        return None

    def write_marker(self, dev, offset, token):
        if not re.match(r'^[A-Za-z0-9_.:-]+$', token):
            raise ValueError('marker tokens are plain words: %r' % token)
        self.command('W', dev, offset, token)

    def read(self, dev, offset, length):
        reply = self.command('R', dev, offset, length)
        return bytes.fromhex(reply[0]) if reply else b''

    def read_marker(self, dev, offset, length=32):
        return self.read(dev, offset, length).rstrip(b'\0').decode(errors='replace')

    def read_speed(self, dev, mib, timeout=300):
        """Seconds the guest takes to read `mib` MiB of `dev` from the start, page cache dropped."""
        start = time.perf_counter()
        self.command('S', dev, mib, timeout=timeout, attempt=timeout)
        return time.perf_counter() - start

    # -- guest agent --------------------------------------------------------------------------
    def wait_agent(self, timeout=30):
        """Wait until libvirt sees the guest agent connected (it lags the guest's ready line)."""
        import libvirt_qemu
        deadline = time.time() + timeout
        while True:
            try:
                return json.loads(libvirt_qemu.qemuAgentCommand(self.dom, '{"execute": "guest-ping"}', 5, 0))
            except libvirt.libvirtError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)

    # -- clean-up -----------------------------------------------------------------------------
    def cleanup(self):
        destroy_domain(self.conn, self.name)
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(os.path.join(DEFAULT_STORE, self.name), ignore_errors=True)


def destroy_domain(conn, name):
    """Remove a test domain whatever its state: running, with snapshots, managed save, ..."""
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    try:
        if dom.isActive():
            dom.destroy()
    except libvirt.libvirtError:
        pass        # stopped (or removed) meanwhile, by a parallel worker cleaning the same leftovers
    try:
        snaps = dom.listAllSnapshots(0)
    except libvirt.libvirtError:
        return      # undefined meanwhile
    for snap in snaps:
        try:
            snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
        except libvirt.libvirtError:
            continue    # best effort: undefining with SNAPSHOTS_METADATA below removes the rest
    try:
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                          | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                          | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    except libvirt.libvirtError:
        if name in [d.name() for d in conn.listAllDomains()]:
            raise   # still there: a real failure to clean up


class Task(object):
    """One task run through ansible-playbook in the background, the way users run it."""

    def __init__(self, module, args, check=False, diff=False, tmp_path=None, environment=None):
        work = tmp_path or WORK_DIR
        self.out = os.path.join(work, 'result-%s.json' % uuid.uuid4().hex[:8])
        play = [{
            'hosts': 'localhost', 'gather_facts': False,
            'tasks': [
                {'name': 'task under test', module: args, 'register': 'r', 'ignore_errors': True,
                 'check_mode': check, 'diff': diff, 'environment': environment or {}},
                {'name': 'save result', 'ansible.builtin.copy': {'content': '{{ r | to_json }}', 'dest': self.out},
                 'check_mode': False},
            ],
        }]
        self.playbook = self.out.replace('.json', '.yml')
        with open(self.playbook, 'w') as f:
            json.dump(play, f)  # JSON is YAML
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1',
                   ANSIBLE_PYTHON_INTERPRETER=os.path.join(TOP, '.venv', 'bin', 'python'),
                   ANSIBLE_LOCALHOST_WARNING='False', ANSIBLE_INVENTORY_UNPARSED_WARNING='False')
        self.proc = subprocess.Popen([os.path.join(TOP, '.venv', 'bin', 'ansible-playbook'), '-i', 'localhost,',
                                      '-c', 'local', self.playbook], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def result(self, timeout=600):
        """The registered result (a failure comes back as a result with `failed: true`)."""
        try:
            stdout, stderr = self.proc.communicate(timeout=timeout)
            if not os.path.exists(self.out):
                raise AssertionError('ansible-playbook produced no result (rc=%d):\n%s\n%s'
                                     % (self.proc.returncode, stdout[-4000:], stderr[-4000:]))
            with open(self.out) as f:
                return json.load(f)
        finally:
            for path in (self.out, self.playbook):
                if os.path.exists(path):
                    os.unlink(path)


def run_task(module, args, check=False, diff=False, tmp_path=None, environment=None):
    """Run one task through ansible-playbook, the way users do, and return its registered result.

    The task never stops the play (ignore_errors), so a failure comes back as a result with
    `failed: true` and the module's message, for the test to assert on.
    """
    return Task(module, args, check=check, diff=diff, tmp_path=tmp_path, environment=environment).result()


def held_task(module, args, point, hold_file, timeout=120):
    """Start a task that waits at crash point `point` (see model/_crash.py); returns it once it waits there."""
    # imported here: conftest.py imports this file before pytest-ansible sets up the collection loader
    from ansible_collections.nova.snapshots.plugins.module_utils.model._crash import HOLD_ENV, HOLD_FILE_ENV
    task = Task(module, args, environment={HOLD_ENV: point, HOLD_FILE_ENV: hold_file})
    deadline = time.time() + timeout
    while not os.path.exists(hold_file):
        if task.proc.poll() is not None or time.time() > deadline:
            raise AssertionError('the task never reached %s: %r' % (point, task.result()))
        time.sleep(0.1)
    return task


def image_bytes(path, offset, length):
    """Bytes of a disk image as a guest would see them, read on the host with qemu-io (no guest)."""
    out = subprocess.run(['qemu-io', '-r', '-U', '-f', 'qcow2', '-c', 'read -v %d %d' % (offset, length), path],
                         check=True, capture_output=True, text=True).stdout
    data = bytearray()
    for line in out.splitlines():
        m = re.match(r'^[0-9a-f]{8}:\s+((?:[0-9a-f]{2}\s)+)', line)
        if m:
            data += bytes.fromhex(m.group(1).replace(' ', ''))
    return bytes(data[:length])


def ticks_around(guest, action):
    """Run action() while the guest runs; (its result, (lo, hi)): the RAM counter the guest had when
    the action saved its RAM lies in [lo, hi]. lo is read before; hi after, or, when the action
    stopped the guest (a switch saves its RAM and stops it), lo plus the seconds the action took."""
    lo = guest.tick()
    start = time.time()
    result = action()
    hi = guest.tick() if guest.state == 'running' else lo + int(time.time() - start) + 1
    return result, (lo, hi)


def assert_ram_restored(guest, offset, at, wait=2.5):
    """After a RAM restore, the counter resumes where the RAM was saved: `at` is that tick, or the
    window (lo, hi) it lies in (ticks_around), since under load a save can take seconds.

    The console after `offset` may still hold ticks of whatever ran before the restore (a branch
    that was booted, say), so what counts is the last run of consecutive ticks: it must start
    in the window. A reboot after the restore would start a new run at 1.
    """
    lo, hi = at if isinstance(at, tuple) else (at, at + 1)
    guest.note_restored()
    time.sleep(wait)
    ticks = guest.ticks_since(offset)
    assert ticks, 'no ticks after the revert'
    start = max(i for i in range(len(ticks)) if i == 0 or ticks[i] != ticks[i - 1] + 1)
    assert lo - 1 <= ticks[start] <= hi + 1, 'counter after revert %r, RAM saved at tick %d..%d' % (ticks, lo, hi)


def write_markers(guest, step, disks=None):
    """Marker `stepN` at offset N*4096 of each disk: a snapshot after step N holds markers 1..N."""
    for dev in disks or sorted(guest.disks):
        guest.write_marker(dev, step * 4096, 'step%d-%s' % (step, dev))


def assert_markers(guest, upto, last=6, disks=None):
    """Markers 1..upto present, upto+1..last absent, on every disk (read by the guest)."""
    for dev in disks or sorted(guest.disks):
        got = [guest.read_marker(dev, k * 4096, 12) for k in range(1, last + 1)]
        want = ['step%d-%s' % (k, dev) if k <= upto else '' for k in range(1, last + 1)]
        assert got == want, 'disk %s: markers %r, expected %r' % (dev, got, want)


def guest_task(module, guest, check=False, diff=False, environment=None, ok=False, **args):
    """run_task on `guest`: its domain and its own store filled in; ok=True asserts the task did not fail."""
    args.setdefault('storage_dir', guest.storage_dir)
    args.setdefault('domain', guest.name)
    result = run_task(module, args, check=check, diff=diff, environment=environment)
    if ok:
        assert not result.get('failed'), result.get('msg')
    return result


def ansible_env():
    """The environment ansible-playbook runs the installed collection in."""
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1',
                ANSIBLE_PYTHON_INTERPRETER=os.path.join(TOP, '.venv', 'bin', 'python'),
                ANSIBLE_LOCALHOST_WARNING='False', ANSIBLE_INVENTORY_UNPARSED_WARNING='False')


def run_tasks(work, steps):
    """Run steps [(module, args, check)] as the tasks of one ansible-playbook run (one start-up for
    them all, as a user's playbook would); their registered results, in order."""
    out = os.path.join(str(work), 'results-%d.json' % len(os.listdir(str(work))))
    tasks = [{'name': 'step %d' % i, module: args, 'register': 'r%d' % i, 'ignore_errors': True, 'check_mode': check}
             for i, (module, args, check) in enumerate(steps)]
    tasks.append({'name': 'save results', 'check_mode': False, 'ansible.builtin.copy': {
        'dest': out, 'content': '{{ [%s] | to_json }}' % ', '.join('r%d' % i for i in range(len(steps)))}})
    play = out.replace('.json', '.yml')
    with open(play, 'w') as f:
        json.dump([{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}], f)
    proc = subprocess.run([os.path.join(TOP, '.venv', 'bin', 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
                           play], env=ansible_env(), capture_output=True, text=True, timeout=600, check=False)
    assert os.path.exists(out), proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out) as f:
        return json.load(f)
