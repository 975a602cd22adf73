#!/usr/bin/env bash
# Start virtlogd and libvirtd when they are not running (there may be no systemd), then wait
# until qemu:///system answers. Safe to run any number of times.
set -euo pipefail

if [ -d /run/systemd/system ]; then
    systemctl start virtlogd.socket libvirtd.socket libvirtd.service 2>/dev/null || true
fi
# By pid file, not by name: the test fleet (tests/fleet/fleet.sh) runs daemons of the same names.
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! alive /run/virtlogd.pid; then
    echo "daemons: starting virtlogd"
    virtlogd -d 9>&-      # not setup.sh's lock: a daemon holding it would block every later setup
fi
if ! alive /run/libvirtd.pid; then
    echo "daemons: starting libvirtd"
    libvirtd -d 9>&-
fi
for _ in $(seq 1 60); do
    if virsh -q -c qemu:///system version >/dev/null 2>&1; then
        exit 0
    fi
    sleep 0.5
done
echo "daemons: libvirtd does not answer on qemu:///system after 30 s" >&2
exit 1
