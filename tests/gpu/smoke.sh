#!/usr/bin/env bash
# Quick end-to-end smoke on a GPU machine: inventory, the fixture models and the
# bundled model through `strata generate` on the GPU(s) vs the CPU engine.
#   tests/gpu/smoke.sh BUILD_DIR OUT_DIR
set -uo pipefail
b=${1:-build-gpu}/strata
out=${2:-/tmp/smoke}
mkdir -p "$out"
fail=0
"$b" inventory > "$out/inventory.txt" 2>&1 || fail=1
"$b" inventory --json > "$out/inventory.json" 2>&1 || fail=1
declare -A prompt=(
  [qwen2-tiny]=33,32,200,125,148,150,178,7,121,37,100,232
  [qwen3-tiny]=311,127,495,481,32,96,101,91,296,178,245,117
  [llama-tiny]=343,331,313,327,26,310,360,100,64,29,306,362)
for m in qwen2-tiny qwen3-tiny llama-tiny; do
  for f in hf $m-f32.gguf $m-f16.gguf; do
    path=tests/fixtures/models/$m/$f
    cpu=$("$b" generate -m "$path" --cpu --tokens "${prompt[$m]}" -n 16 2>&1)
    gpu=$("$b" generate -m "$path" --tokens "${prompt[$m]}" -n 16 2>&1)
    if [ "$cpu" = "$gpu" ]; then echo "ok    $m/$f gpu == cpu: $gpu"; else echo "DIFF  $m/$f cpu [$cpu] gpu [$gpu]"; fail=1; fi
  done
done
for src in models/tiny-kjv models/tiny-kjv.gguf; do
  "$b" -v generate -m "$src" -p "In the beginning" --greedy -n 40 --stats 2>&1 | tail -4
  "$b" perplexity -m "$src" -f tests/fixtures/kjv/test.txt 2>&1
done
exit $fail
