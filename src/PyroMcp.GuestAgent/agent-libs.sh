#!/bin/sh
# Copies the dynamic loader and the libraries the published agent links against (as ldd shows
# them on this host, where it was linked) into DIR/lib, under their sonames.
#   agent-libs.sh DIR
set -eu
dir=$1
rm -rf "$dir/lib"
mkdir -p "$dir/lib"
list=$(ldd "$dir/pyro-agent" | awk '$2 == "=>" && $3 ~ /^\// { n = $1; sub(".*/", "", n); print n, $3 }')
echo "$list" | while read -r name path; do
  [ -n "$name" ] && cp -L "$path" "$dir/lib/$name"
done
for need in ld-linux-x86-64.so.2 libc.so.6; do
  if [ ! -f "$dir/lib/$need" ]; then
    echo "agent-libs.sh: ldd did not show $need for $dir/pyro-agent; the agent cannot run without it" >&2
    exit 1
  fi
done
