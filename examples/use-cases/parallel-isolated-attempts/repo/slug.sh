# slug.sh: turn a title into a URL slug.

# slug TITLE: lower case, runs of anything but letters and digits become one '-', no '-' at either end.
slug() {
  printf '%s' "$1" | tr ' ' '-'
}
