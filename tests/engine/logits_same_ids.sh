#!/usr/bin/env bash
# generate --tokens with a host sampler (penalties): writing --logits must not
# change the ids (the --logits path used to skip the sampler's history, so the
# penalties saw neither the prompt nor the generated ids).
set -euo pipefail
strata=$1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
args=(-m tests/fixtures/models/qwen2-tiny/hf --tokens 33,32,200,125,148,150,178,7,121,37,100,232 -n 16 --greedy)
fail=0
for pen in "--repeat-penalty 1.5" "--presence-penalty 2 --repeat-last-n 4" "--temp 0.8 --top-k 20 --seed 7 --frequency-penalty 0.5"; do
  a=$("$strata" generate "${args[@]}" $pen)
  b=$("$strata" generate "${args[@]}" $pen --logits "$tmp/l.npy")
  if [ "$a" != "$b" ]; then echo "$pen: [$a] without --logits, [$b] with"; fail=1; fi
done
[ $fail -eq 0 ] || exit 1
echo "3 passed, 0 failed"
