#!/usr/bin/env bash
# A fleet of simulated hypervisors on this one machine, for the fleet tests, benchmarks and demo.
#
#   tests/fleet/fleet.sh up [N]     start hosts hv1..hvN (default 3); a running host is left alone
#   tests/fleet/fleet.sh down       stop every host and remove everything the fleet made
#   tests/fleet/fleet.sh stop HOST  stop that host's libvirtd only (a hypervisor whose libvirt is down)
#   tests/fleet/fleet.sh start HOST start it again
#   tests/fleet/fleet.sh exec HOST CMD...  run a command inside the host (its mount namespace)
#   tests/fleet/fleet.sh inventory  print the inventory (INI) of the running hosts
#   tests/fleet/fleet.sh status     one line per host
#
# Each host is a private mount and UTS namespace (unshare --mount --uts, host name hvN) in which
# libvirt's state directories, /etc/libvirt, the collection's store (/var/lib/nova) and the guest
# image directory (/var/lib/nova-guests) are bind-mounted from the host's own directory under
# $NOVA_FLEET_DIR (default /var/lib/nova-fleet/hvN), and /etc/machine-id is its own. Inside it run
# the host's own virtlogd, libvirtd and an sshd listening on 127.0.0.1N only (key-only root login
# with the fleet's test key). An ssh login lands in that namespace, so the modules there use the
# default qemu:///system and default paths. From outside, a host's libvirtd is reached at
# qemu+unix:///system?socket=$dir/run-libvirt/libvirt-sock
# and its files under $dir/<mount>.
#
# Idempotent: `up` twice starts nothing twice, `down` twice removes nothing twice. Needs root,
# openssh-server, python3-libvirt and python3-lxml (installed here when missing).
set -euo pipefail

FLEET=${NOVA_FLEET_DIR:-/var/lib/nova-fleet}
# inside path -> per-host directory name
MOUNTS=(/run/libvirt:run-libvirt /var/lib/libvirt:lib-libvirt /var/cache/libvirt:cache-libvirt
        /var/log/libvirt:log-libvirt /etc/libvirt:etc-libvirt /var/lib/nova:lib-nova
        /var/lib/nova-guests:guests)

die() { echo "fleet: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
# The daemons started here must not inherit the caller's descriptors (a flock held by a caller
# would be held as long as the daemons live): close everything above stderr first.
for fd in "/proc/$$/fd/"*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ] && [ "$fd" -lt 255 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
done
# One fleet.sh at a time changes the fleet (the lock is on a descriptor the daemons do not get).
if [ "${1:-}" != exec ] && [ "${1:-}" != inventory ] && [ "${1:-}" != status ]; then
    exec 7>/run/nova-fleet.lock
    flock 7
fi

host_dir() { echo "$FLEET/$1"; }
host_addr() { echo "127.0.0.$((10 + ${1#hv}))"; }
pid_of() { # pid_of HOST daemon -> pid if alive
    local f
    f="$(host_dir "$1")/$2.pid"
    [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"
    return 0
}
hosts() { # the hosts that have a directory, in order
    local d
    for d in "$FLEET"/hv*; do [ -d "$d" ] && basename "$d"; done | sort -V
}
sock_uri() { echo "qemu+unix:///system?socket=$(host_dir "$1")/run-libvirt/libvirt-sock"; }

packages() {
    local p missing=()
    for p in openssh-server python3-libvirt python3-lxml; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "fleet: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    mkdir -p /run/sshd   # sshd's privilege separation directory (no systemd to make it)
}

key() {
    if [ ! -f "$FLEET/id_ed25519" ]; then
        mkdir -p "$FLEET"
        chmod 0755 "$FLEET"
        ssh-keygen -q -t ed25519 -N '' -C nova-fleet-test -f "$FLEET/id_ed25519"
        cp "$FLEET/id_ed25519.pub" "$FLEET/authorized_keys"
        chmod 0600 "$FLEET/authorized_keys"
    fi
}

wait_libvirt() {
    local h=$1 i
    for i in $(seq 1 60); do
        virsh -q -c "$(sock_uri "$h")" version >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    die "$h: libvirtd does not answer after 15 s (see $(host_dir "$h")/libvirtd.log)"
}

wait_ssh() {
    local h=$1 i
    for i in $(seq 1 60); do
        ssh_to "$h" true 2>/dev/null && return 0
        sleep 0.25
    done
    die "$h: sshd on $(host_addr "$h") does not answer after 15 s"
}

ssh_to() {
    local h=$1
    shift
    ssh -i "$FLEET/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o LogLevel=ERROR -o ConnectTimeout=5 "root@$(host_addr "$h")" "$@"
}

# The namespace of a host: that of its sshd (it lives as long as the host is up).
ns_pid() { pid_of "$1" sshd; }

in_ns() { # in_ns HOST CMD... : run inside the host's mount namespace
    local h=$1 pid
    shift
    pid=$(ns_pid "$h")
    [ -n "$pid" ] || die "$h is not up"
    # --root/--wd: the host's root directory too. Entering a mount namespace alone puts a process at
    # that namespace's real "/", which in a chroot (a fresh root) is outside it.
    nsenter --target "$pid" --mount --uts --root --wd -- "$@"
}

start_libvirtd() {
    local h=$1 d
    d=$(host_dir "$h")
    [ -n "$(pid_of "$h" libvirtd)" ] && return 0
    rm -f "$d/libvirtd.pid"
    in_ns "$h" env LIBVIRT_LOG_OUTPUTS="3:file:/var/log/libvirt/libvirtd.log" \
        libvirtd -d -p "$d/libvirtd.pid" 7>&-
    wait_libvirt "$h"
}

stop_libvirtd() {
    local h=$1 pid i
    pid=$(pid_of "$h" libvirtd)
    [ -n "$pid" ] || return 0
    kill "$pid"
    for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$(host_dir "$h")/libvirtd.pid"
}

up_host() {
    local h=$1 d addr m inside sub
    d=$(host_dir "$h")
    addr=$(host_addr "$h")
    if [ -n "$(ns_pid "$h")" ]; then
        start_libvirtd "$h"     # up already; a stopped libvirtd comes back
        return 0
    fi
    mkdir -p "$d"
    for m in "${MOUNTS[@]}"; do
        sub=${m#*:}
        mkdir -p "$d/$sub"
    done
    # Its own /etc/libvirt (persistent domain definitions live there), copied once from the machine's.
    if [ ! -f "$d/etc-libvirt/libvirtd.conf" ]; then
        cp -a /etc/libvirt/. "$d/etc-libvirt/"
        rm -f "$d"/etc-libvirt/qemu/*.xml "$d"/etc-libvirt/qemu/autostart/*.xml \
              "$d"/etc-libvirt/qemu/networks/autostart/*.xml
    fi
    mkdir -p "$d/lib-libvirt/qemu" "$d/lib-nova/snapshots"
    [ -f "$d/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$d/ssh_host_ed25519_key"
    # Its own machine id (as every real host has; the store records it as the VM's owner).
    [ -f "$d/machine-id" ] || tr -d '-' < /proc/sys/kernel/random/uuid > "$d/machine-id"
    cat > "$d/sshd_config" <<EOF
ListenAddress $addr
Port 22
HostKey $d/ssh_host_ed25519_key
PidFile $d/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile $FLEET/authorized_keys
UsePAM no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
MaxStartups 50:30:100
MaxSessions 50
EOF
    rm -f "$d"/*.pid
    local binds=""
    for m in "${MOUNTS[@]}"; do
        inside=${m%%:*}
        sub=${m#*:}
        binds+="mkdir -p $inside && mount --bind $d/$sub $inside && "
    done
    # Its mounts stay in it (private propagation). In a chroot "/" is no mount point and unshare cannot
    # make it private ("cannot change root filesystem propagation"): there the namespace keeps the
    # propagation it inherits, which leaks nothing when the mount holding the chroot is private (as on
    # a machine without systemd, where mounts are private unless made shared).
    local propagation=private
    mountpoint -q / || propagation=unchanged
    # The namespace lives as long as its daemons; sshd is started last and names it (ns_pid).
    unshare --mount --uts --propagation "$propagation" -- bash -c "
        exec 7>&-
        set -e
        $binds true
        mount --bind $d/machine-id /etc/machine-id
        hostname $h
        virtlogd -d -p $d/virtlogd.pid
        LIBVIRT_LOG_OUTPUTS='3:file:/var/log/libvirt/libvirtd.log' libvirtd -d -p $d/libvirtd.pid
        /usr/sbin/sshd -f $d/sshd_config -E $d/sshd.log
    "
    for _ in $(seq 1 40); do [ -n "$(ns_pid "$h")" ] && break; sleep 0.25; done
    [ -n "$(ns_pid "$h")" ] || die "$h: sshd did not start (see $d/sshd.log)"
    readlink "/proc/$(ns_pid "$h")/ns/mnt" > "$d/mntns"
    wait_libvirt "$h"
    wait_ssh "$h"
}

down_host() {
    local h=$1 d name pid daemon
    d=$(host_dir "$h")
    if [ -z "$(pid_of "$h" libvirtd)" ] && [ -n "$(ns_pid "$h")" ]; then
        start_libvirtd "$h" || true     # to remove its domains cleanly
    fi
    if [ -n "$(pid_of "$h" libvirtd)" ]; then
        for name in $(virsh -q -c "$(sock_uri "$h")" list --all --name 2>/dev/null); do
            virsh -q -c "$(sock_uri "$h")" destroy "$name" >/dev/null 2>&1 || true
            virsh -q -c "$(sock_uri "$h")" undefine "$name" --snapshots-metadata --managed-save \
                >/dev/null 2>&1 || true
        done
    fi
    # Every process in the host's namespace: the daemons and the ssh sessions they serve (an
    # Ansible ControlPersist master keeps one open for a minute after a play).
    if [ -f "$d/mntns" ]; then
        local ns p
        ns=$(cat "$d/mntns")
        for p in /proc/[0-9]*; do
            [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && kill "${p#/proc/}" 2>/dev/null
        done
        sleep 0.5
    fi
    for daemon in sshd libvirtd virtlogd; do
        pid=$(pid_of "$h" "$daemon")
        if [ -n "$pid" ]; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    # Any QEMU left behind in that namespace (its libvirtd was killed before it could stop them).
    for f in "$d"/run-libvirt/qemu/*.pid; do
        if [ -f "$f" ]; then kill -9 "$(cat "$f")" 2>/dev/null || true; fi
    done
    rm -rf "$d"
}

inventory() {
    local h
    echo "[hypervisors]"
    for h in $(hosts); do
        echo "$h ansible_host=$(host_addr "$h")"
    done
    cat <<EOF

[hypervisors:vars]
ansible_connection=ssh
ansible_user=root
ansible_ssh_private_key_file=$FLEET/id_ed25519
ansible_ssh_common_args=-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
ansible_python_interpreter=/usr/bin/python3
EOF
}

cmd=${1:-}
case "$cmd" in
    up)
        n=${2:-3}
        packages
        key
        for i in $(seq 1 "$n"); do up_host "hv$i"; done
        echo "fleet: up: $(hosts | tr '\n' ' ')"
        ;;
    down)
        for h in $(hosts); do down_host "$h"; done
        rm -rf "$FLEET"
        echo "fleet: down"
        ;;
    stop)
        stop_libvirtd "${2:?host}"
        ;;
    start)
        start_libvirtd "${2:?host}"
        ;;
    exec)
        h=${2:?host}
        shift 2
        in_ns "$h" "$@"
        ;;
    inventory)
        inventory
        ;;
    status)
        for h in $(hosts); do
            echo "$h addr=$(host_addr "$h") sshd=$(pid_of "$h" sshd) libvirtd=$(pid_of "$h" libvirtd) virtlogd=$(pid_of "$h" virtlogd)"
        done
        ;;
    *)
        sed -n '2,10p' "$0" >&2
        exit 2
        ;;
esac
