#!/bin/busybox sh
# pyro initramfs init: load the virtio drivers, mount the environment's root disk, show the
# runtime (agent with its own loader and libraries, tini, busybox) under /run/pyro, and hand
# over to the agent.
#
# Every step is paid on each cold boot, and under TCG a fork and exec of busybox costs 10-20 ms:
# this shell (busybox-static's, FEATURE_SH_STANDALONE) runs an applet named without a path in a
# fork and, for most applets (mkdir, insmod, cp, ln, rm, ip, hostname, chroot), without an exec;
# tests and the kernel command line are shell builtins. mount has no such form and is named with
# its path, since it needs /proc/self/exe before /proc is mounted.
/bin/busybox mkdir -p /proc /dev /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs devtmpfs /dev
fail() { echo "pyro-init: $*" > /dev/console; /bin/busybox sleep 1; echo b > /proc/sysrq-trigger; }
set -f
read -r cmdline < /proc/cmdline
net= bare= hostname=
for arg in $cmdline; do
  case "$arg" in
    pyro.net=dhcp) net=1 ;;
    pyro.bare=1) bare=1 ;;
    pyro.bare=idle) bare=idle ;;
    pyro.hostname=*) hostname="${arg#pyro.hostname=}" ;;
  esac
done
set +f
# The network drivers cost ~100 ms under TCG; a guest without a network device has no use for them.
modules="virtio_ring virtio virtio_mmio virtio_blk virtio_console virtio_balloon"
[ -n "$net" ] && modules="$modules failover net_failover virtio_net"
for m in $modules; do
  [ -f /lib/pyro-modules/$m.ko ] && insmod /lib/pyro-modules/$m.ko
done
i=0
while [ ! -b /dev/vda ]; do
  i=$((i+1)); [ $i -gt 500 ] && fail "root disk /dev/vda did not appear"
  usleep 10000
done
/bin/busybox mount -t ext4 -o rw,noatime /dev/vda /newroot || fail "cannot mount the root disk"
if [ -n "$bare" ]; then
  # The benchmark floor: the same kernel and root disk, straight to a shell that exits, or (the
  # idle-memory floor) that sleeps until the host kills QEMU.
  [ "$bare" = idle ] && exec /bin/busybox switch_root /newroot /bin/sh -c 'exec sleep infinity'
  exec /bin/busybox switch_root /newroot /bin/sh -c 'echo b > /proc/sysrq-trigger'
fi
# Nothing before the agent reads /sys, so it is mounted where the agent finds it, not moved there.
/bin/busybox mount -t sysfs sysfs /newroot/sys || fail "cannot mount /sys"
/bin/busybox mount -t tmpfs -o mode=0755,size=64m tmpfs /newroot/run || fail "cannot mount /run"
mkdir -p /newroot/run/pyro
# The runtime is shown where it was unpacked rather than copied (11 MiB under TCG is ~150 ms):
# /pyro, with busybox linked in beside the agent, tini and the agent's own loader and libc (it
# is linked to load them from /run/pyro/lib, whatever the root holds). The hand-over below keeps
# the initramfs's files instead of deleting them as switch_root would.
ln -f /bin/busybox /pyro/busybox || fail "cannot stage busybox"
/bin/busybox mount --bind /pyro /newroot/run/pyro || fail "cannot stage the agent"
# Services bound to 127.0.0.1 and published ports (tunnelled to the guest's loopback) need lo.
ip link set lo up || fail "cannot bring up the loopback"
if [ -n "$net" ]; then
  # eth0 is the user-mode network of passt on the host. The lease mirrors the host's address and
  # gateway; what it gave is recorded for the agent (hello) and becomes /etc/resolv.conf.
  /bin/busybox cat > /pyro/udhcpc.sh <<'EOS'
#!/bin/busybox sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    gw="${router%% *}"
    [ -n "$gw" ] && ip route replace default via "$gw" dev "$interface"
    printf 'address=%s\nprefix=%s\ngateway=%s\ndns="%s"\n' "$ip" "${mask:-24}" "$gw" "$dns" > /newroot/run/pyro/network
    { for s in $dns; do echo "nameserver $s"; done; echo "options timeout:2 attempts:2"; } > /newroot/run/pyro/resolv.conf
    ;;
esac
exit 0
EOS
  chmod 0755 /pyro/udhcpc.sh
  ip link set eth0 up 2>/dev/null
  if ! /bin/busybox udhcpc -i eth0 -f -q -n -t 5 -T 1 -s /pyro/udhcpc.sh >/dev/null 2>&1; then
    echo 'error="no DHCP lease on eth0 from the host passt"' > /newroot/run/pyro/network
  fi
  if [ -f /newroot/run/pyro/resolv.conf ]; then
    rm -f /newroot/etc/resolv.conf
    cp /newroot/run/pyro/resolv.conf /newroot/etc/resolv.conf
  fi
fi
[ -n "$hostname" ] && hostname "$hostname"
/bin/busybox mount --move /dev /newroot/dev
# Terminals for workspace shells: a devpts of the guest's own, with /dev/ptmx pointing into it.
mkdir -p /newroot/dev/pts /newroot/dev/shm
/bin/busybox mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /newroot/dev/pts || echo "pyro-init: cannot mount /dev/pts: workspace shells will not open" > /newroot/dev/console
rm -f /newroot/dev/ptmx && ln -s pts/ptmx /newroot/dev/ptmx
/bin/busybox mount --move /proc /newroot/proc
# switch_root without its clean-up: the root disk becomes / and the initramfs stays underneath,
# where /run/pyro's bind mount still shows /pyro.
cd /newroot || fail "cannot enter the root disk"
/bin/busybox mount --move . / || fail "cannot move the root disk to /"
exec chroot . /run/pyro/tini -s -g -- /run/pyro/pyro-agent --busybox /run/pyro/busybox
