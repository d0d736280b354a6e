#!/usr/bin/env bash
# Stages in two processes on a GPU machine (docs/multihost.md): the greedy ids
# of `mpirun -np 2` equal those of one process running the same placement.
#
#   source shared/device/setup.sh     # on the lent GPU machines (deps for the build)
#   tests/gpu/mpi.sh                  # summary in $OUT/mpi (else build-gpu/out/mpi)
#
# Cases (each: the fixtures' F32 GGUFs and the bundled model, 16 greedy ids):
#   gpu0-cpu1      rank 0 owns a GPU stage (bf16), rank 1 a CPU stage: GPU -> MPI -> CPU
#   cpu0-gpu1      rank 0 a CPU stage, rank 1 the GPU stage (the picks come back over MPI)
#   gpu-cpu-gpu    3 stages GPU (rank 0) -> CPU (rank 1) -> GPU (rank 0), models with 3+ layers
#   host-mpi       GPU (rank 0) -> GPU (rank 1) with transport: host (MPI through host memory);
#   nccl           the same with NCCL (ncclCommInitRank across the ranks); both need 2 GPUs,
#                  one per rank, and are SKIP on one GPU
# then `strata bench` on gpu0-cpu1 (per-link time across the ranks, printed).
# Exit 1 when ids differ or a run fails.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${STRATA_GPU_BUILD:-$root/build-gpu}
out=${OUT:-$build/out}/mpi
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }
status=0
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
mpirun=(mpirun --allow-run-as-root --oversubscribe -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH)

note "strata mpi GPU run $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
nvidia-smi --query-gpu=index,name,compute_cap --format=csv,noheader 2>&1 | sed 's/^/gpu   /' | tee -a "$summary"
mpirun --version 2>&1 | head -1 | sed 's/^/mpi   /' | tee -a "$summary"
n_gpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')

gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if [ ! -x "$build/strata" ] || ! "$build/strata" --version | grep -q 'mpi=ON'; then
  cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSTRATA_CUDA=ON -DSTRATA_MPI=ON \
    -DCMAKE_CUDA_ARCHITECTURES=native > "$out/configure.log" 2>&1 || { tail -20 "$out/configure.log"; exit 1; }
fi
cmake --build "$build" --parallel "$(nproc)" --target strata > "$out/build.log" 2>&1 ||
  { grep -E "error|FAILED" "$out/build.log" | head -30; exit 1; }
strata=$build/strata
"$strata" --version | sed 's/^/build /' | tee -a "$summary"

# deploy FILE MODEL TRANSPORT "sel:rank:first-last" ...   (one device per stage)
deploy() {
  local file=$1 model=$2 transport=$3; shift 3
  {
    echo "version: 1"
    echo "model: {path: \"$model\"}"
    echo "devices:"
    local i=0
    for s in "$@"; do
      IFS=: read -r sel idx rank layers <<< "$s"
      if [ "$sel" = cpu ]; then echo "  - {device: cpu, name: s$i, rank: $rank}"
      else echo "  - {device: \"$sel:$idx\", name: s$i, rank: $rank, precision: bf16}"; fi
      i=$((i + 1))
    done
    echo "placement:"
    echo "  strategy: manual"
    echo "  manual:"
    i=0
    for s in "$@"; do
      IFS=: read -r sel idx rank layers <<< "$s"
      echo "    - {device: s$i, layers: $layers}"
      i=$((i + 1))
    done
    echo "transport: $transport"
    echo "context: 128"
  } > "$file"
}

# the same placement with every rank folded to 0: one process
one_process() { sed -E 's/, rank: [0-9]+//' "$1" > "$2"; }

run_case() {  # name np model ids deploy-args...
  local name=$1 np=$2 model=$3 ids=$4; shift 4
  local tag=$name.$(basename "$model")
  deploy "$out/$tag.yaml" "$model" "$@"
  one_process "$out/$tag.yaml" "$out/$tag.one.yaml"
  local want got
  want=$("$strata" generate -c "$out/$tag.one.yaml" --tokens "$ids" -n 16 2> "$out/$tag.one.err")
  got=$("${mpirun[@]}" -np "$np" "$strata" generate -c "$out/$tag.yaml" --tokens "$ids" -n 16 2> "$out/$tag.err")
  local rc=$?
  if [ $rc -eq 0 ] && [ -n "$want" ] && [ "$got" = "$want" ]; then
    note "PASS  $tag: $got"
  else
    note "FAIL  $tag (rc $rc): got '$got', one process '$want' (see $tag.err)"; status=1
    head -5 "$out/$tag.err" | sed 's/^/      /' | tee -a "$summary"
  fi
}

fx=$root/tests/fixtures/models
models=(
  "$fx/qwen2-tiny/qwen2-tiny-f32.gguf|2|33,32,200,125,148,150,178,7,121,37,100,232"
  "$fx/qwen3-tiny/qwen3-tiny-f32.gguf|3|311,127,495,481,32,96,101,91,296,178,245,117"
  "$fx/llama-tiny/llama-tiny-f32.gguf|2|343,331,313,327,26,310,360,100,64,29,306,362"
  "$root/models/tiny-kjv|4|4,93,218,11,267,258,468"
)
for entry in "${models[@]}"; do
  IFS='|' read -r model layers ids <<< "$entry"
  half=$((layers / 2 - 1))
  run_case gpu0-cpu1 2 "$model" "$ids" auto "cuda:0:0:0-$half" "cpu::1:$((half + 1))-$((layers - 1))"
  run_case cpu0-gpu1 2 "$model" "$ids" auto "cpu::0:0-$half" "cuda:0:1:$((half + 1))-$((layers - 1))"
  if [ "$layers" -ge 3 ]; then
    run_case gpu-cpu-gpu 2 "$model" "$ids" auto "cuda:0:0:0-0" "cpu::1:1-$((layers - 2))" "cuda:0:0:$((layers - 1))-$((layers - 1))"
  fi
  if [ "$n_gpu" -ge 2 ]; then
    run_case host-mpi 2 "$model" "$ids" host "cuda:0:0:0-$half" "cuda:1:1:$((half + 1))-$((layers - 1))"
    run_case nccl 2 "$model" "$ids" nccl "cuda:0:0:0-$half" "cuda:1:1:$((half + 1))-$((layers - 1))"
  fi
done
[ "$n_gpu" -ge 2 ] || note "SKIP  host-mpi, nccl: one GPU (each rank needs its own)"

# bench: per-link time across the ranks
deploy "$out/bench.yaml" "$root/models/tiny-kjv" auto "cuda:0:0:0-1" "cpu::1:2-3"
if "${mpirun[@]}" -np 2 "$strata" bench -c "$out/bench.yaml" --prompt-tokens 64 --decode-tokens 32 --repeat 3 \
     > "$out/bench.txt" 2> "$out/bench.err"; then
  note "PASS  bench across ranks (bench.txt):"
  grep -E "^  (prefill|decode)  |^  link|^  [0-9] " "$out/bench.txt" | sed 's/^/      /' | tee -a "$summary"
else
  note "FAIL  bench across ranks (bench.err)"; status=1
fi
note "mpi: $(grep -c '^PASS' "$summary") passed, $(grep -c '^FAIL' "$summary") failed"
exit $status
