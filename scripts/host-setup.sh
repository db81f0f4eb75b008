# Sourced by ./pyro and ./test.sh: makes sure the host has what pyro needs.
# As root it installs missing Debian packages; otherwise it prints the exact command and stops.

# Keep in step with src/PyroMcp/Host/HostTools.cs (tool -> package).
PYRO_HOST_TOOLS=(
  "qemu-system-x86_64:qemu-system-x86"
  "qemu-img:qemu-utils"
  "mmdebstrap:mmdebstrap"
  "mkfs.ext4:e2fsprogs"
  "/bin/busybox:busybox-static"
  "/usr/bin/tini-static:tini"
  "setpriv:util-linux"
  "unshare:util-linux"
  "apt-get:apt"
  "dpkg-deb:dpkg"
)

pyro_missing_packages() {
  local entry tool pkg missing=()
  for entry in "${PYRO_HOST_TOOLS[@]}"; do
    tool=${entry%%:*}; pkg=${entry#*:}
    if [[ $tool == /* ]]; then [[ -e $tool ]] || missing+=("$pkg")
    else PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing+=("$pkg"); fi
  done
  # The dynamic busybox package also provides /bin/busybox; the initramfs needs the static one.
  if [[ -e /bin/busybox ]] && ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed"; then
    missing+=("busybox-static")
  fi
  printf '%s\n' "${missing[@]}" | sort -u | grep -v '^$' || true
}

pyro_ensure_host() {
  local missing
  missing=$(pyro_missing_packages | tr '\n' ' ')
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

# Builds the solution in Release when any source is newer than the last build.
pyro_build() {
  local root=$1 stamp="$1/artifacts/.build-stamp"
  if [[ -f $stamp ]] && [[ -z $(find "$root/src" "$root/Directory.Build.props" "$root/Directory.Packages.props" "$root/global.json" -newer "$stamp" -print -quit 2>/dev/null) ]]; then
    return 0
  fi
  echo "[setup] building pyro (dotnet build -c Release)" >&2
  dotnet build "$root/src/PyroMcp.Cli/PyroMcp.Cli.csproj" -c Release -nologo -v quiet -clp:ErrorsOnly >&2
  mkdir -p "$root/artifacts" && touch "$stamp"
}
