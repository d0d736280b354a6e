#!/usr/bin/env bash
# Shows that a check can fail: runs a check against a planted defect and passes
# only when the check fails the way it should.
#   tests/harness/expect_fail.sh "WANT" cmd args...
# Passes when cmd exits with a status from 1 to 125 (a failed check, not a crash
# or a signal) and its combined output contains WANT; a check that skipped
# (exit 77: a Python package missing) makes this a skip too.
set -uo pipefail
want=$1; shift
out=$("$@" 2>&1)
rc=$?
if [ $rc -eq 77 ]; then printf '%s\n' "$out" | tail -n 5; exit 77; fi
if [ $rc -ge 1 ] && [ $rc -le 125 ] && [[ $out == *"$want"* ]]; then
  printf '%s\n' "$out" | tail -n 15
  echo "planted defect caught (exit $rc, output names it: '$want')"
  echo "1 passed, 0 failed"
  exit 0
fi
printf '%s\n' "$out" | tail -n 40
echo "the check did not fail as it should on the planted defect: exit $rc (want 1..125), output $([[ $out == *"$want"* ]] && echo has || echo lacks) '$want'"
echo "0 passed, 1 failed"
exit 1
