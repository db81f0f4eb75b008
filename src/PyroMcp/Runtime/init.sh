#!/bin/busybox sh
# pyro initramfs init: load the virtio drivers, mount the environment's root disk, put the
# runtime (agent with its own loader and libraries, tini, busybox) on a tmpfs under /run/pyro,
# and hand over to the agent.
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
fail() { echo "pyro-init: $*" > /dev/console; /bin/busybox sleep 1; echo b > /proc/sysrq-trigger; }
for m in virtio_ring virtio virtio_mmio virtio_blk virtio_console failover net_failover virtio_net; do
  [ -f /lib/pyro-modules/$m.ko ] && /bin/busybox insmod /lib/pyro-modules/$m.ko
done
i=0
while [ ! -b /dev/vda ]; do
  i=$((i+1)); [ $i -gt 500 ] && fail "root disk /dev/vda did not appear"
  /bin/busybox usleep 10000
done
/bin/busybox mount -t ext4 -o rw,noatime /dev/vda /newroot || fail "cannot mount the root disk"
if /bin/busybox grep -q 'pyro.bare=1' /proc/cmdline; then
  # The benchmark floor: the same kernel and root disk, straight to a shell that exits.
  exec /bin/busybox switch_root /newroot /bin/sh -c 'echo b > /proc/sysrq-trigger'
fi
/bin/busybox mount -t tmpfs -o mode=0755,size=64m tmpfs /newroot/run || fail "cannot mount /run"
/bin/busybox mkdir -p /newroot/run/pyro
/bin/busybox cp /pyro/pyro-agent /pyro/tini /bin/busybox /newroot/run/pyro/ || fail "cannot stage the agent"
# The agent's own loader and libc: it is linked to load them from here, whatever the root holds.
/bin/busybox cp -r /pyro/lib /newroot/run/pyro/lib || fail "cannot stage the agent's libraries"
# Services bound to 127.0.0.1 and published ports (tunnelled to the guest's loopback) need lo.
/bin/busybox ip link set lo up || fail "cannot bring up the loopback"
if /bin/busybox grep -q 'pyro.net=dhcp' /proc/cmdline; then
  # eth0 is the user-mode network of passt on the host. The lease mirrors the host's address and
  # gateway; what it gave is recorded for the agent (hello) and becomes /etc/resolv.conf.
  /bin/busybox cat > /pyro/udhcpc.sh <<'EOS'
#!/bin/busybox sh
case "$1" in
  bound|renew)
    /bin/busybox ip addr flush dev "$interface"
    /bin/busybox ip addr add "$ip/${mask:-24}" dev "$interface"
    gw="${router%% *}"
    [ -n "$gw" ] && /bin/busybox ip route replace default via "$gw" dev "$interface"
    printf 'address=%s\nprefix=%s\ngateway=%s\ndns="%s"\n' "$ip" "${mask:-24}" "$gw" "$dns" > /newroot/run/pyro/network
    { for s in $dns; do echo "nameserver $s"; done; echo "options timeout:2 attempts:2"; } > /newroot/run/pyro/resolv.conf
    ;;
esac
exit 0
EOS
  /bin/busybox chmod 0755 /pyro/udhcpc.sh
  /bin/busybox ip link set eth0 up 2>/dev/null
  if ! /bin/busybox udhcpc -i eth0 -f -q -n -t 5 -T 1 -s /pyro/udhcpc.sh >/dev/null 2>&1; then
    echo 'error="no DHCP lease on eth0 from the host passt"' > /newroot/run/pyro/network
  fi
  if [ -f /newroot/run/pyro/resolv.conf ]; then
    /bin/busybox rm -f /newroot/etc/resolv.conf
    /bin/busybox cp /newroot/run/pyro/resolv.conf /newroot/etc/resolv.conf
  fi
fi
hostname=$(/bin/busybox sed -n 's/.*pyro.hostname=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$hostname" ] && /bin/busybox hostname "$hostname"
/bin/busybox mount --move /dev /newroot/dev
# Terminals for workspace shells: a devpts of the guest's own, with /dev/ptmx pointing into it.
/bin/busybox mkdir -p /newroot/dev/pts /newroot/dev/shm
/bin/busybox mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /newroot/dev/pts || echo "pyro-init: cannot mount /dev/pts: workspace shells will not open" > /newroot/dev/console
/bin/busybox rm -f /newroot/dev/ptmx && /bin/busybox ln -s pts/ptmx /newroot/dev/ptmx
/bin/busybox mount --move /proc /newroot/proc
/bin/busybox mount --move /sys /newroot/sys
exec /bin/busybox switch_root /newroot /run/pyro/tini -s -g -- /run/pyro/pyro-agent --busybox /run/pyro/busybox
