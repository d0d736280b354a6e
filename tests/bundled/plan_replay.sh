#!/usr/bin/env bash
# `strata plan -o FILE` then `strata generate --plan FILE` runs that plan, not
# what the planner would choose now:
#   1. a plan saved from replay-manual.yaml (two stages 0-0 on 'first' and 1-3
#      on 'second', context 256, prefill chunks of 7) replayed on replay-auto.yaml,
#      where the planner picks one stage on 'first', context 512, chunks of 512:
#      the stage table (device labels, layers, precision, attention), context and
#      chunk that generate -v prints are the plan's, and the ids and logits equal
#      those of running replay-manual.yaml itself;
#   2. a plan saved for the model on its own (-m --cpu) gives the same text as
#      planning afresh;
#   3. a plan made for another model or other devices is refused with the reason
#      and a hint.
# tests/bundled/tests.cmake also runs this with a strata that ignores --plan
# (tests/harness/plant.sh drop-plan), which must fail it.
set -euo pipefail
strata=$1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
stages() {  # the stage table of `strata -v` (stderr file) as "label layers prec attn; ..."
  grep -E '^[0-9]+ +[^ ]+ +[0-9]+-[0-9]+' "$1" |
    sed -E 's/^([0-9]+) +([^ ]+) +([0-9]+-[0-9]+)( [EO])* +([a-z0-9]+) +([a-z]+) .*/\2 \3 \5 \6/' | paste -sd ';' -
}
header() { grep -m1 -oE 'context [0-9]+' "$1"; grep -m1 -oE 'in chunks of [0-9]+' "$1"; }
ids="3,9,27,81,243,729,100,200,300"

# what the planner chooses on replay-auto.yaml (the premise: it differs from the plan)
"$strata" -v generate -c tests/bundled/replay-auto.yaml --tokens $ids -n 8 > /dev/null 2> "$tmp/auto.err"
[ "$(stages "$tmp/auto.err")" = "first 0-3 f32 eager" ] ||
  { echo "premise: the planner on replay-auto.yaml was expected to pick one stage on 'first', got: $(stages "$tmp/auto.err")"; exit 1; }

"$strata" plan -c tests/bundled/replay-manual.yaml -o "$tmp/manual.yaml" > /dev/null
"$strata" -v generate -c tests/bundled/replay-auto.yaml --plan "$tmp/manual.yaml" --tokens $ids -n 8 \
  --logits "$tmp/replay.npy" > "$tmp/replay.out" 2> "$tmp/replay.err"
"$strata" generate -c tests/bundled/replay-manual.yaml --tokens $ids -n 8 --logits "$tmp/manual.npy" > "$tmp/manual.out"
want="first 0-0 f32 eager;second 1-3 f32 eager"
got=$(stages "$tmp/replay.err")
if [ "$got" != "$want" ]; then
  echo "generate --plan ran the stages [$got], the saved plan has [$want] (the planner alone: [$(stages "$tmp/auto.err")])"
  fail=1
fi
if [ "$(header "$tmp/replay.err" | paste -sd ' ' -)" != "context 256 in chunks of 7" ]; then
  echo "generate --plan ran with [$(header "$tmp/replay.err" | paste -sd ' ' -)], the saved plan has [context 256 in chunks of 7]"
  fail=1
fi
if ! cmp -s "$tmp/replay.out" "$tmp/manual.out" || ! cmp -s "$tmp/replay.npy" "$tmp/manual.npy"; then
  echo "generate --plan gave ids [$(cat "$tmp/replay.out")], running replay-manual.yaml gave [$(cat "$tmp/manual.out")] (or other logits)"
  fail=1
fi

"$strata" plan -m models/tiny-kjv --cpu -o "$tmp/plan.yaml" > /dev/null
a=$("$strata" generate -m models/tiny-kjv --cpu -p "In the beginning" --greedy -n 16)
b=$("$strata" generate -m models/tiny-kjv --cpu --plan "$tmp/plan.yaml" -p "In the beginning" --greedy -n 16)
[ "$a" = "$b" ] || { echo "replayed plan gave [$b], planning afresh gave [$a]"; fail=1; }
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
[ $fail -eq 0 ] || { echo "0 passed, 1 failed"; exit 1; }
echo "plan replay: a saved two-stage plan ($want, context 256, chunks of 7) is followed on a deployment the planner would run as one stage; same text as planning afresh; foreign plans refused"
echo "4 passed, 0 failed"
