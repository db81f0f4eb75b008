# strutil 1.0: string helpers for POSIX shell.

# upper TEXT: TEXT in upper case.
upper() { printf '%s' "$1" | tr 'a-z' 'A-Z'; }

# repeat TEXT N: TEXT N times.
repeat() { i=0; out=; while [ "$i" -lt "$2" ]; do out="$out$1"; i=$((i + 1)); done; printf '%s' "$out"; }
