#!/usr/bin/env bash
# Build the tiny test guest (kernel + busybox initramfs) from Debian packages, once.
# Usage: build.sh [OUT_DIR]   (default /var/cache/nova-snapshots/guest)
# Re-running is a no-op while the cached build matches this script and init.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-/var/cache/nova-snapshots/guest}
stamp=$(cat "$here/build.sh" "$here/init" | sha256sum | cut -c1-16)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ]; then
    echo "test guest: cached in $out"
    exit 0
fi
echo "test guest: building in $out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# The cloud kernel: small, and virtio as modules we can load by hand.
pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$pkg" ] || { echo "cannot resolve linux-image-cloud-amd64 (run apt-get update)" >&2; exit 1; }
(cd "$work" && apt-get download -q "$pkg" >/dev/null 2>&1) || { echo "apt-get download $pkg failed" >&2; exit 1; }
dpkg-deb -x "$work"/linux-image-*.deb "$work/k"
kver=$(ls "$work/k/lib/modules")

root="$work/root"
mkdir -p "$root"/{bin,sbin,lib/modules,usr/sbin,etc,proc,sys,dev,run,tmp}
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk virtio_console; do
    find "$work/k/lib/modules/$kver" -name "$m.ko" -exec cp {} "$root/lib/modules/" \;
    [ -f "$root/lib/modules/$m.ko" ] || { echo "module $m missing from $pkg" >&2; exit 1; }
done

# qemu-guest-agent with its shared libraries and the dynamic loader, for quiesced snapshots.
if [ -x /usr/sbin/qemu-ga ]; then
    cp /usr/sbin/qemu-ga "$root/usr/sbin/"
    for lib in $(ldd /usr/sbin/qemu-ga | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
fi

install -m 0755 "$here/init" "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.img"
cp "$work/k/boot/vmlinuz-$kver" "$work/vmlinuz"
install -m 0644 "$work/vmlinuz" "$work/initrd.img" "$out/"
chmod 0755 "$out"
echo "$stamp" > "$out/stamp"
echo "test guest: built kernel $kver into $out"
