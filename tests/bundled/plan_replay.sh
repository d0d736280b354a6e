#!/usr/bin/env bash
# `strata plan -o FILE` then `strata generate --plan FILE` runs that plan: the
# same text as planning afresh; a plan made for another model or other devices
# is refused with the reason and a hint.
set -euo pipefail
strata=$1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$strata" plan -m models/tiny-kjv --cpu -o "$tmp/plan.yaml" > /dev/null
a=$("$strata" generate -m models/tiny-kjv --cpu -p "In the beginning" --greedy -n 16)
b=$("$strata" generate -m models/tiny-kjv --cpu --plan "$tmp/plan.yaml" -p "In the beginning" --greedy -n 16)
[ "$a" = "$b" ] || { echo "replayed plan gave [$b], planning afresh gave [$a]"; exit 1; }
fail=0
expect_error() {  # expected-substring, command...
  local want=$1; shift
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if [ "$rc" -ne 2 ] || [[ "$out" != *"$want"* ]]; then echo "want exit 2 and [$want], got $rc: $out"; fail=1; fi
}
expect_error "the plan is for tiny-kjv (4 layers, hidden 256, vocab 4096), the model is" \
  "$strata" generate -m tests/fixtures/models/qwen2-tiny/hf --cpu --plan "$tmp/plan.yaml" --tokens 1,2
"$strata" plan -c tests/bundled/what-if-tiny.yaml -o "$tmp/whatif.yaml" > /dev/null
expect_error "runs on 'catalog:tesla-m40', which this deployment does not list" \
  "$strata" generate -m models/tiny-kjv --cpu --plan "$tmp/whatif.yaml" -p hi
[ $fail -eq 0 ] || exit 1
echo "plan replay: same text as planning afresh; foreign plans refused"
echo "3 passed, 0 failed"
