# test.sh: the project's tests; exits 1 when one fails.
. ./price.sh
failed=0
check() {
  if [ "$2" = "$3" ]; then echo "ok $1"; else echo "FAIL $1: expected $3, got $2"; failed=1; fi
}
check "3 x 250" "$(total 3 250)" 750
check "1 x 99" "$(total 1 99)" 99
check "0 x 500" "$(total 0 500)" 0
exit $failed
