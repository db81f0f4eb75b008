#!/bin/sh
# test.sh: run every tests/*.sh with the vendored dependencies; TAP-like output, exit 1 on a failure.
set -u
[ -f vendor/strutil-1.0/strutil.sh ] || { echo "Bail out! dependencies missing: run scripts/install-deps.sh"; exit 2; }
. vendor/strutil-1.0/strutil.sh
. ./banner.sh
n=0; failed=0
ok() { n=$((n + 1)); if [ "$2" = "$3" ]; then echo "ok $n - $1"; else echo "not ok $n - $1: expected '$3', got '$2'"; failed=1; fi; }
for t in tests/*.sh; do . "$t"; done
echo "1..$n"
exit $failed
