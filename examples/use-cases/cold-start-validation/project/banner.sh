# banner.sh: the project's code, built on strutil.

# banner TEXT: TEXT in upper case between two rules as wide as it.
banner() { rule=$(repeat '=' ${#1}); printf '%s\n%s\n%s' "$rule" "$(upper "$1")" "$rule"; }
