#!/bin/sh
# install-deps.sh: fetch every dependency in deps.txt into vendor/ (NAME VERSION URL per line).
set -eu
fetch() {
  if command -v curl >/dev/null 2>&1; then curl -fsSL -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then wget -q -O "$2" "$1"
  else /run/pyro/busybox wget -q -O "$2" "$1"; fi
}
mkdir -p vendor
while read -r name version url; do
  [ -n "$name" ] || continue
  fetch "$url" "vendor/$name-$version.tar.gz"
  tar -xzf "vendor/$name-$version.tar.gz" -C vendor
  echo "installed $name $version"
done < deps.txt
