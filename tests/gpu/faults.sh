#!/usr/bin/env bash
# Injected faults on the GPU machine (docs/faults.md): every device allocation
# (cudaMalloc / pinned host buffers through be_alloc) and every link transfer
# (st_link_send: peer, nccl, host staging) that a short generation reaches is
# made to fail once, in turn, with STRATA_FAULT=KIND:N. Each run must end with
# a clean "error: " line naming the failure and exit code 1 within 60 s (no
# hang, no crash), or recover with the same output (tests/faults/walk.sh).
#
#   source shared/device/setup.sh      # on the lent GPU machines
#   tests/gpu/faults.sh                # summary in $OUT/faults (else build-gpu/out/faults)
#   FAULT_KINDS="dev_alloc link alloc" tests/gpu/faults.sh    # host allocations too (slower)
#
# Deployments (written to the output directory, the bundled model, 8 tokens):
#   1gpu       the whole model on cuda:0
#   gpu-cpu    layers 0-1 on cuda:0, 2-3 on the CPU (host staging link)
#   2gpu-peer, 2gpu-nccl, 2gpu-host   cuda:0 -> cuda:1 (with two GPUs; else SKIP)
# Exit 1 when any run breaks the rules; the failing runs' stderr is in log.txt.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${STRATA_GPU_BUILD:-$root/build-gpu}
out=${OUT:-$build/out}/faults
mkdir -p "$out"
summary=$out/summary.txt log=$out/log.txt
: >"$summary"
: >"$log"
note() { echo "$*" | tee -a "$summary"; }

gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if [ ! -x "$build/strata" ]; then
    cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSTRATA_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=native >>"$log" 2>&1 || { note "FAIL configure (see log.txt)"; exit 1; }
fi
cmake --build "$build" --parallel "$(nproc)" --target strata >>"$log" 2>&1 || { note "FAIL build (see log.txt)"; exit 1; }
strata=$build/strata
n_gpu=${FAULT_GPUS:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')}
note "strata GPU fault walk $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown), $n_gpu GPU(s)"

model=$root/models/tiny-kjv
deploy() {  # name devices-and-placement-yaml
    printf 'version: 1\nmodel: {path: %s}\n%s\ncontext: 256\nprefill_chunk: 5\n' "$model" "$2" >"$out/$1.yaml"
}
deploy 1gpu "devices: [cuda:0]"
deploy gpu-cpu "devices: [{device: cuda:0, name: gpu}, {device: cpu, name: host}]
placement: {strategy: manual, manual: [{device: gpu, layers: 0-1}, {device: host, layers: 2-3}]}"
for t in peer nccl host; do
    deploy 2gpu-$t "devices: [{device: cuda:0, name: a}, {device: cuda:1, name: b}]
placement: {strategy: manual, manual: [{device: a, layers: 0-1}, {device: b, layers: 2-3}]}
transport: $t"
done

status=0
cases="1gpu gpu-cpu 2gpu-peer 2gpu-nccl 2gpu-host"
for c in $cases; do
    if [ "${c#2gpu}" != "$c" ] && [ "$n_gpu" -lt 2 ]; then note "SKIP  $c (needs two GPUs)"; continue; fi
    for k in ${FAULT_KINDS:-dev_alloc link}; do
        if [ "$k" = link ] && [ "$c" = 1gpu ]; then continue; fi   # one stage: no link
        t0=$(date +%s)
        res=$(bash "$root/tests/faults/walk.sh" "$strata" "$k" -- generate -c "$out/$c.yaml" \
              -p "In the beginning" -n 8 --seed 1 2>&1)
        rc=$?
        { echo "==== $c $k (exit $rc)"; echo "$res"; } >>"$log"
        if [ $rc -eq 0 ]; then note "PASS  $c $k: $(echo "$res" | tail -1 | sed 's/^walk: //') ($(( $(date +%s) - t0 ))s)"
        else note "FAIL  $c $k: $(echo "$res" | grep -c '^walk: STRATA_FAULT') bad runs (see log.txt)"; status=1; fi
    done
done
exit $status
