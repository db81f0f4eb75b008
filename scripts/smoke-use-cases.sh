#!/usr/bin/env bash
# The use-case smoke pack: every recipe in docs/use-cases, CLI and MCP, against real guests.
# Prepares the host, builds, publishes the native CLI, runs only the tests in Category=UseCase and
# prints one line per recipe and surface. Exits non-zero when any of them fails.
#   scripts/smoke-use-cases.sh        (or: make smoke-use-cases)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/host-setup.sh
source "$root/scripts/host-setup.sh"
pyro_ensure_host
# The recipes use jq and curl on the host, as a user would.
needed=()
command -v jq >/dev/null 2>&1 || needed+=(jq)
command -v curl >/dev/null 2>&1 || needed+=(curl)
pyro_install_for "the use-case recipes" "${needed[@]}"
pyro_build_all "$root" smoke
rm -f artifacts/use-case-smoke.txt
status=0
start=$(date +%s)
dotnet test tests/PyroMcp.GuestTests -c Release --no-build -nologo --filter "Category=UseCase" --logger "console;verbosity=minimal" >&2 || status=$?
echo "--- use cases ---"
if [[ -s artifacts/use-case-smoke.txt ]]; then sort artifacts/use-case-smoke.txt; else echo "no recipe ran"; status=1; fi
if grep -q 'outcome=fail' artifacts/use-case-smoke.txt 2>/dev/null; then status=1; fi
echo "use cases: $(grep -c 'outcome=pass' artifacts/use-case-smoke.txt 2>/dev/null || true) passed, $(grep -c 'outcome=fail' artifacts/use-case-smoke.txt 2>/dev/null || true) failed, $(( $(date +%s) - start )) s"
exit "$status"
