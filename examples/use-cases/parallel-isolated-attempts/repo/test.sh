# test.sh: the project's tests; exits 1 when one fails.
. ./slug.sh
failed=0
check() {
  if [ "$2" = "$3" ]; then echo "ok $1"; else echo "FAIL $1: expected '$3', got '$2'"; failed=1; fi
}
check "words" "$(slug 'Hello World')" hello-world
check "punctuation" "$(slug 'Fix: the  build!')" fix-the-build
check "digits" "$(slug 'Release 2.0')" release-2-0
exit $failed
