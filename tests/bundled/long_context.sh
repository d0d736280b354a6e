#!/usr/bin/env bash
# generate without --ctx grows the context to fit prompt + N. The plan is made
# once, after the prompt is tokenized; the old code re-opened the deployment
# and then read generation settings from the freed one (a heap-use-after-free
# that only the ASan build shows, and that this test catches there).
#  1. -n 1100 past the 1024-token context the model was trained with;
#  2. a 7,000+-token prompt through -p - (stdin).
# Both must exit 0 and produce the requested number of tokens' worth of text.
set -euo pipefail
strata=$1
m=models/tiny-kjv
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$strata" generate -m $m --cpu --greedy -p "In the beginning" -n 1100 --stats >"$tmp/out1" 2>"$tmp/err1" \
  || { echo "exit $?"; cat "$tmp/err1"; exit 1; }
out=$(cat "$tmp/out1")
grep -q "decode: 1099 tokens" "$tmp/err1" || { echo "want 1099 decode steps (1100 tokens):"; cat "$tmp/err1"; exit 1; }
[ "${out#In the beginning}" != "$out" ] || { echo "output does not start with the prompt"; exit 1; }
prompt=$(head -c 40000 tests/fixtures/kjv/test.txt)
n_prompt=$(printf '%s' "$prompt" | "$strata" tokenize -m $m | wc -w)
[ "$n_prompt" -gt 7000 ] || { echo "the prompt has only $n_prompt tokens"; exit 1; }
printf '%s' "$prompt" | "$strata" generate -m $m --cpu --greedy -p - -n 4 --stats >/dev/null 2>"$tmp/err2" \
  || { echo "exit $?"; cat "$tmp/err2"; exit 1; }
grep -q "prefill: $n_prompt tokens" "$tmp/err2" || { echo "want a $n_prompt-token prefill:"; cat "$tmp/err2"; exit 1; }
echo "long context: -n 1100 and a $n_prompt-token stdin prompt ran"
echo "2 passed, 0 failed"
