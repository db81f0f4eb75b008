# Sourced by ./pyro and ./test.sh: makes sure the host has what pyro needs.
# As root it installs missing Debian packages; otherwise it prints the exact command and stops.

# What pyro needs on the host is listed once, in host-packages.txt beside this script; the SDK
# embeds the same file (src/PyroMcp/Host/HostTools.cs), so doctor and this script agree.
PYRO_HOST_PACKAGES_FILE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/host-packages.txt"

# Prints one line per tool: name|package|candidates (space-separated), as the SDK reads the file.
pyro_host_tools() {
  local name pkg candidates rest
  local -a words
  while IFS='|' read -r name pkg candidates rest; do
    [[ $name =~ ^[[:space:]]*(#|$) ]] && continue
    read -r -a words <<< "$candidates"
    name=${name#"${name%%[![:space:]]*}"}; name=${name%"${name##*[![:space:]]}"}
    printf '%s|%s|%s\n' "$name" "${pkg//[[:space:]]/}" "${words[*]}"
  done < "$PYRO_HOST_PACKAGES_FILE"
}

pyro_missing_packages() {
  local name pkg candidates candidate found missing=()
  while IFS='|' read -r name pkg candidates; do
    found=
    for candidate in $candidates; do
      if [[ $candidate == /* ]]; then [[ -e $candidate ]] && found=1
      else PATH="$PATH:/usr/sbin:/sbin" command -v "$candidate" >/dev/null 2>&1 && found=1; fi
      [[ -n $found ]] && break
    done
    [[ -n $found ]] || missing+=("$pkg")
  done < <(pyro_host_tools)
  # The dynamic busybox package also provides /bin/busybox; the initramfs needs the static one.
  if [[ -e /bin/busybox ]] && ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed"; then
    missing+=("busybox-static")
  fi
  printf '%s\n' "${missing[@]}" | sort -u | grep -v '^$' || true
}

# Building from a checkout also links the guest agent as Native AOT: the ILCompiler packs come
# from NuGet, clang links, zlib1g-dev is on its link line. Build-only, so not in
# host-packages.txt (doctor checks what an installed tool needs, and that is not a compiler).
pyro_missing_build_packages() {
  local found= candidate
  for candidate in clang clang-{20..13}; do
    command -v "$candidate" >/dev/null 2>&1 && { found=1; break; }
  done
  [[ -n $found ]] || echo clang
  dpkg-query -W -f='${Status}' zlib1g-dev 2>/dev/null | grep -q "ok installed" || echo zlib1g-dev
}

pyro_ensure_host() {
  local missing
  missing=$({ pyro_missing_packages; pyro_missing_build_packages; } | tr '\n' ' ')
  if [[ -n ${missing// /} ]]; then
    if [[ $(id -u) -eq 0 ]]; then
      echo "[setup] installing host packages: $missing" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >&2
      # shellcheck disable=SC2086
      apt-get install -y -qq --no-install-recommends $missing >&2
    else
      echo "pyro: missing host packages: $missing" >&2
      echo "pyro: install them with: sudo apt-get update && sudo apt-get install -y $missing" >&2
      return 1
    fi
  fi
  pyro_ensure_qemu_user || return 1
  if ! command -v dotnet >/dev/null 2>&1; then
    echo "pyro: the .NET 10 SDK is required to build from a checkout and was not found on PATH." >&2
    echo "pyro: install it from Microsoft's Debian package feed (dotnet-sdk-10.0), then rerun." >&2
    return 1
  fi
  # The guest kernel comes from the Debian archive: apt needs package lists to download it.
  if [[ -z $(ls -A /var/lib/apt/lists/ 2>/dev/null | grep -v -E '^(lock|partial|auxfiles)$') ]]; then
    if [[ $(id -u) -eq 0 ]]; then apt-get update -qq >&2; else
      echo "pyro: apt has no package lists; run: sudo apt-get update" >&2; return 1; fi
  fi
}

# As root, QEMU drops to this system user after opening its files (-runas); see src/PyroMcp/Host/HostTools.cs.
# Without it pyro falls back to 'nobody', which other daemons may share, and doctor warns.
pyro_ensure_qemu_user() {
  [[ $(id -u) -eq 0 ]] || return 0
  getent passwd pyro-qemu >/dev/null 2>&1 && return 0
  echo "[setup] creating the system user pyro-qemu (QEMU drops to it)" >&2
  PATH="$PATH:/usr/sbin:/sbin" useradd --system --no-create-home --shell /usr/sbin/nologin pyro-qemu
}

# Publishes the native CLI (Native AOT, with its native supervisor and guest agent beside it) into
# artifacts/pyro when any source is newer than the last build. ./pyro runs artifacts/pyro/pyro.
pyro_build() {
  local root=$1 stamp="$1/artifacts/.build-stamp"
  if [[ -f $stamp && -x $root/artifacts/pyro/pyro ]] && [[ -z $(find "$root/src" "$root/scripts/host-packages.txt" "$root/Directory.Build.props" "$root/Directory.Packages.props" "$root/global.json" -newer "$stamp" -print -quit 2>/dev/null) ]]; then
    return 0
  fi
  echo "[setup] building pyro (dotnet publish -c Release, Native AOT: a few minutes the first time)" >&2
  pyro_publish_cli "$root"
  touch "$stamp"
}

# The native CLI, unconditionally (./test.sh calls it after building the solution).
pyro_publish_cli() {
  local root=$1
  dotnet publish "$root/src/PyroMcp.Cli/PyroMcp.Cli.csproj" -c Release -r linux-x64 -p:PublishAot=true \
    -o "$root/artifacts/pyro" -nologo -v quiet -clp:ErrorsOnly >&2
}

# Extra packages a script needs beyond pyro's own: installs them with apt as root, otherwise
# prints the line to run and fails. $1 says what for ("the tests"), the rest are package names.
pyro_install_for() {
  local purpose=$1; shift
  [[ $# -gt 0 ]] || return 0
  if [[ $(id -u) -eq 0 ]]; then
    echo "[setup] installing $* for $purpose" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
  else
    echo "pyro: $purpose need: sudo apt-get install -y $*" >&2; return 1
  fi
}

# The solution and the native CLI the tests and the smoke pack run (Native AOT, artifacts/pyro).
pyro_build_all() {
  local root=$1 tag=$2
  echo "[$tag] building the solution" >&2
  dotnet build "$root/pyro.slnx" -c Release -nologo -v quiet -clp:ErrorsOnly
  echo "[$tag] publishing the native CLI" >&2
  pyro_publish_cli "$root"
  touch "$root/artifacts/.build-stamp"
}
