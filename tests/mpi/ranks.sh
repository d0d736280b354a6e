#!/usr/bin/env bash
# CPU stages in several processes under Open MPI give exactly the ids of one
# process (docs/multihost.md). For every fixture model and the bundled one:
#   - single process, one stage: the reference ids (the golden tests check
#     those against transformers);
#   - mpirun -np 2: stages on rank 0, rank 1, rank 0 again (A -> B -> A) when
#     the model has 3+ layers, else rank 0 then rank 1;
#   - mpirun -np 3: stages on ranks 1, 2 (and 0): rank 0 may only drive.
# Then the same with prefill in chunks of 5 tokens, every position's logits
# (--logits, bit for bit), text generation, and a deployment whose every stage
# is on rank 1.
#   ranks.sh STRATA [CASE]      CASE: ids (2 and 3 ranks, chunked prefill) | more (--logits, text,
#                               every stage on rank 1, bench across ranks) | all (default)
set -euo pipefail
strata=$(realpath "$1")
only=${2:-all}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpirun=(mpirun --allow-run-as-root --oversubscribe --mca btl self,vader,tcp)
fail=0 passed=0
ok() { echo "PASS $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

# Under AddressSanitizer (tools/test.sh's asan build) the ranks' reports go to
# files: Open MPI's own leaks (its unloaded plugins) are not strata's, so a
# report fails the test only when it is an error or a leak through strata code.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$tmp/san"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}exitcode=0"
san_check() {
  local f
  for f in "$tmp"/san.*; do
    [ -e "$f" ] || continue
    if grep -qE "ERROR: AddressSanitizer|runtime error:" "$f" ||
       grep -qE " in (st_|pl_|main |run )|/(orchestrator|devices|planner|model|base|kernels)/[a-z_]+\.c" "$f"; then
      bad "sanitizer report $(basename "$f")"; head -40 "$f" | sed 's/^/    /'
    fi
    rm -f "$f"
  done
}

# config MODEL RANKS... -> a deployment with one CPU device per listed rank
# (each with one thread) and manual stages over the model's layers in that order
config() {
  local model=$1 layers=$2 out=$3; shift 3
  local n=$# i=0 first=0
  {
    echo "version: 1"
    echo "model: {path: \"$model\"}"
    echo "devices:"
    for r in "$@"; do echo "  - {device: cpu, name: s$i, threads: 1, rank: $r}"; i=$((i + 1)); done
    echo "placement:"
    echo "  strategy: manual"
    echo "  manual:"
    i=0
    for r in "$@"; do
      local per=$(( (layers - first) / (n - i) ))
      local last=$((first + per - 1))
      echo "    - {device: s$i, layers: $first-$last}"
      first=$((last + 1)); i=$((i + 1))
    done
    echo "context: 128"
  } > "$out"
}

run_ids() {   # label, np, config, extra args -> compares with $ref
  local label=$1 np=$2 cfg=$3; shift 3
  local got
  if ! got=$("${mpirun[@]}" -np "$np" "$strata" generate -c "$cfg" "$@" 2> "$tmp/err"); then
    bad "$label: exit $?"; sed 's/^/    /' "$tmp/err"; return
  fi
  if [ "$got" = "$ref" ]; then ok "$label: $got"; else bad "$label: got '$got', one process gives '$ref'"; fi
}

# model dir/file, layers, prompt ids
models=(
  "tests/fixtures/models/qwen2-tiny/hf|2|33,32,200,125,148,150,178,7,121,37,100,232"
  "tests/fixtures/models/qwen3-tiny/qwen3-tiny-f32.gguf|3|311,127,495,481,32,96,101,91,296,178,245,117"
  "tests/fixtures/models/llama-tiny/llama-tiny-f16.gguf|2|343,331,313,327,26,310,360,100,64,29,306,362"
  "models/tiny-kjv|4|4,93,218,11,267,258,468"
)

cd "$root"
for entry in "${models[@]}"; do
  IFS='|' read -r model layers ids <<< "$entry"
  name=$(basename "$(dirname "$model")")/$(basename "$model")
  abs="$root/$model"
  ref=$("$strata" generate -m "$model" --cpu --threads 1 --tokens "$ids" -n 16)
  if [ "$only" = all ] || [ "$only" = ids ]; then
    if [ "$layers" -ge 3 ]; then config "$abs" "$layers" "$tmp/np2.yaml" 0 1 0
    else config "$abs" "$layers" "$tmp/np2.yaml" 0 1; fi
    run_ids "$name np2" 2 "$tmp/np2.yaml" --tokens "$ids" -n 16
    if [ "$layers" -ge 3 ]; then config "$abs" "$layers" "$tmp/np3.yaml" 1 2 0
    else config "$abs" "$layers" "$tmp/np3.yaml" 1 2; fi
    run_ids "$name np3" 3 "$tmp/np3.yaml" --tokens "$ids" -n 16
    # prefill in chunks of 5: three passes before the first pick
    run_ids "$name np3 --batch 5" 3 "$tmp/np3.yaml" --tokens "$ids" -n 16 --batch 5
  fi
  if [ "$only" = all ] || [ "$only" = more ]; then
    config "$abs" "$layers" "$tmp/r1.yaml" 1
    run_ids "$name every stage on rank 1" 2 "$tmp/r1.yaml" --tokens "$ids" -n 16
  fi
  if [ "$only" = all ] || [ "$only" = more ]; then
    # every position's logits (the last stage's rows travel to rank 0 in pieces of 16 rows), bit for bit:
    # 24 prompt tokens in prefill passes of 20 and 4, then 3 decode steps
    config "$abs" "$layers" "$tmp/lg.yaml" 0 1
    "$strata" generate -m "$model" --cpu --threads 1 --tokens "$ids,$ids" -n 4 --logits "$tmp/one.npy" > /dev/null
    if "${mpirun[@]}" -np 2 "$strata" generate -c "$tmp/lg.yaml" --tokens "$ids,$ids" -n 4 --batch 20 --logits "$tmp/two.npy" \
         > /dev/null 2> "$tmp/err" && cmp -s "$tmp/one.npy" "$tmp/two.npy"; then
      ok "$name --logits across ranks: $(stat -c %s "$tmp/two.npy") bytes identical"
    else
      bad "$name --logits across ranks differ or failed"; sed 's/^/    /' "$tmp/err"
    fi
  fi
done

if [ "$only" = all ] || [ "$only" = more ]; then
  ref=$("$strata" generate -m models/tiny-kjv --cpu --threads 1 -p "In the beginning" -n 24 --temp 0)
  config "$root/models/tiny-kjv" 4 "$tmp/text.yaml" 0 1 2
  run_ids "tiny-kjv text np3" 3 "$tmp/text.yaml" -p "In the beginning" -n 24 --temp 0

  # plan --probe: the hop between the ranks is costed from a ping-pong between them
  if "${mpirun[@]}" -np 2 "$strata" plan -c configs/examples/two-ranks-cpu.yaml --probe > "$tmp/plan.txt" 2> "$tmp/err" &&
     grep -qF "network between ranks: measured between the ranks (--probe)" "$tmp/plan.txt" &&
     grep -qE "^  0 -> 1  network .* rank 0 -> 1$" "$tmp/plan.txt"; then
    ok "plan --probe on 2 ranks: $(grep -E '^  0 -> 1' "$tmp/plan.txt" | tr -s ' ')"
  else
    bad "plan --probe on 2 ranks"; sed 's/^/    /' "$tmp/err" "$tmp/plan.txt" | head -20
  fi

  # bench reports every link's time, the ones across ranks included, and its tokens are the greedy ones
  config "$root/models/tiny-kjv" 4 "$tmp/bench.yaml" 0 1 2
  if "${mpirun[@]}" -np 3 "$strata" bench -c "$tmp/bench.yaml" --prompt-tokens 16 --decode-tokens 8 --repeat 1 \
       --bw-bytes 1MiB --json > "$tmp/bench.json" 2> "$tmp/err" &&
     python3 - "$tmp/bench.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
links = b["links"]
assert [(l["from_rank"], l["to_rank"]) for l in links] == [(0, 1), (1, 2)], links
assert all(l["type"] == "mpi" and l["decode_ms"] > 0 and l["prefill_ms"] > 0 for l in links), links
assert all(s["decode_ms"] > 0 and s["prefill_ms"] > 0 for s in b["stages"]), b["stages"]
assert b["tokens_valid"] and b["tokens_repeatable"], b
print("links", [(l["decode_ms"], l["prefill_ms"]) for l in links])
PY
  then
    ok "bench across 3 ranks: per-link times of both network links, stage times of every rank"
  else
    bad "bench across 3 ranks"; sed 's/^/    /' "$tmp/err"; head -c 2000 "$tmp/bench.json"
  fi
fi

san_check
echo "$passed passed, $fail failed"
[ "$fail" -eq 0 ]
