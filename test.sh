#!/usr/bin/env bash
# Runs every test: unit tests, then guest-backed tests that boot real VMs (TCG here, KVM where usable).
#   ./test.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$root"
# shellcheck source=scripts/host-setup.sh
source "$root/scripts/host-setup.sh"
pyro_ensure_host
# The end-to-end MCP test drives pyro with the official TypeScript client, which needs Node.js;
# the service tests probe published ports with curl, as a user would; the bench needs qemu-ga.
test_packages=()
command -v node >/dev/null 2>&1 || test_packages+=(nodejs)
command -v npm >/dev/null 2>&1 || test_packages+=(npm)
command -v curl >/dev/null 2>&1 || test_packages+=(curl)
# The Makefile's targets are checked with make -n; the use-case recipes read JSON with jq.
command -v make >/dev/null 2>&1 || test_packages+=(make)
command -v jq >/dev/null 2>&1 || test_packages+=(jq)
# The bench (run by DocsTests) measures pyro's exec against qemu-guest-agent's guest-exec, with the
# host's qemu-ga copied into its guest. Its systemd unit waits for a virtio port the host lacks.
[[ -x /usr/sbin/qemu-ga ]] || test_packages+=(qemu-guest-agent)
# Real registry software for the OCI environment tests (loopback only): the CNCF registry, and
# skopeo and umoci to cross-check what pyro publishes and imports.
fresh_registry=0
command -v docker-registry >/dev/null 2>&1 || { test_packages+=(docker-registry); fresh_registry=1; }
command -v skopeo >/dev/null 2>&1 || test_packages+=(skopeo)
command -v umoci >/dev/null 2>&1 || test_packages+=(umoci)
command -v htpasswd >/dev/null 2>&1 || test_packages+=(apache2-utils)
pyro_install_for "the tests" "${test_packages[@]}"
# Installing the package enables a machine-wide registry on :5000; the tests start their own on
# 127.0.0.1, so one this script just installed is switched off again.
if [[ $fresh_registry == 1 && -d /run/systemd/system ]]; then
  systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
fi
pyro_build_all "$root" test
# Adversarial tests append their figure lines here ("N tried, 0 escapes"); printed after the run.
rm -f artifacts/test-figures.txt
# The use-case smoke pack (UseCaseTests) appends one line per recipe and surface here.
rm -f artifacts/use-case-smoke.txt
log=$(mktemp)
status=0
dotnet test pyro.slnx -c Release --no-build -nologo --logger "console;verbosity=normal" 2>&1 | tee "$log" || status=$?
# One closing line in the plain 'N passed, N failed' form, summed over the test projects.
count() { { grep -aoE "$1: +[0-9]+" "$log" || true; } | awk '{ s += $2 } END { print s + 0 }'; }
passed=$(count Passed); failed=$(count Failed); skipped=$(count Skipped)
# Failures again at the very end, where a reader of the tail of a long log looks first.
failures=$(grep -a -A12 -E '^\s+Failed [A-Za-z]' "$log" | cut -c1-400 | head -n 120 || true)
rm -f "$log"
if [[ -s artifacts/test-figures.txt ]]; then
  echo "--- figures ---"
  sort artifacts/test-figures.txt
fi
if [[ -s artifacts/use-case-smoke.txt ]]; then
  echo "--- use cases ---"
  sort artifacts/use-case-smoke.txt
fi
if [[ -n "$failures" ]]; then
  echo "--- failures ---"
  echo "$failures"
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit "$status"
