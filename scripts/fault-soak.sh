#!/usr/bin/env bash
# The long fault matrix: the kill points CI runs once, repeated until at least CYCLES cycles
# (default 1000) have run. One cycle is one kill (of the CLI, the MCP server, the supervisor or
# QEMU, at one named point) followed by a later command and the full check of processes, states
# and files. Boots real guests; under TCG expect several hours for 1000 cycles.
#   scripts/fault-soak.sh [CYCLES]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/host-setup.sh
source "$root/scripts/host-setup.sh"
pyro_ensure_host
cycles=${1:-1000}
# A round of the create matrix is 9 cycles and a round of the lifecycle matrix 10.
rounds=$(( (cycles + 18) / 19 ))
echo "[soak] building" >&2
dotnet build pyro.slnx -c Release -nologo -v quiet -clp:ErrorsOnly
mkdir -p artifacts
rm -f artifacts/test-figures.txt
echo "[soak] $rounds rounds of the fault matrix (>= $cycles cycles)" >&2
status=0
PYRO_FAULT_ROUNDS=$rounds dotnet test tests/PyroMcp.GuestTests -c Release --no-build -nologo \
  --filter "FullyQualifiedName~FaultMatrixTests.Killed" --logger "console;verbosity=normal" || status=$?
# Sum the per-test figure lines: "N cycles, N orphan processes, N state mismatches, N leaked files".
grep -h "fault matrix" artifacts/test-figures.txt 2>/dev/null | awk '
  { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^cycles/) c += $i; if ($(i+1) == "orphan") o += $i; if ($(i+1) == "state") s += $i; if ($(i+1) == "leaked") l += $i } }
  END { printf "%d cycles, %d orphan processes, %d state mismatches, %d leaked files\n", c, o, s, l }'
exit "$status"
