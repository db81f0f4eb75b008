# price.sh: shop arithmetic, in POSIX shell.

# total QUANTITY UNIT_CENTS: the price of QUANTITY items, in cents.
total() {
  echo $(( $1 + $2 ))
}
