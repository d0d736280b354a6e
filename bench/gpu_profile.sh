#!/usr/bin/env bash
# Where a decode step's GPU time goes, kernel by kernel (Nsight Compute): runs
# `strata bench` on a deployment under ncu, profiling the launches of a few
# decode steps after warm-up (graph nodes one by one), and prints each kernel's
# count, total and mean time and its share of the step.
#
#   bench/gpu_profile.sh DEPLOY.yaml [STEPS]        (STEPS decode steps, default 2)
#
# Environment: STRATA (default build-gpu/strata), OUT (the raw CSV and the table
# are copied to $OUT/gpu_profile). ncu replays each kernel (--replay-mode
# application is not needed: the weights are not written), so the run is slow;
# the times are per kernel with the clocks left alone (--clock-control none).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dep=${1:?usage: gpu_profile.sh DEPLOY.yaml [STEPS]}
steps=${2:-2}
strata=${STRATA:-$root/build-gpu/strata}
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -x "$ncu" ] || { echo "gpu_profile: ncu (Nsight Compute) not found"; exit 1; }
work=$(mktemp -d)
# the first launches only (ncu replays each kernel: a whole bench run would take
# minutes): prefill of 4 tokens and a few decode steps, each pass starting with
# the embedding kernel; the complete decode passes (those with GEMV kernels)
# are summed
"$ncu" --clock-control none --graph-profiling node --metrics gpu__time_duration.sum --csv \
  --launch-count "${PROFILE_LAUNCHES:-1500}" \
  "$strata" bench -c "$dep" --prompt-tokens 4 --decode-tokens $((4 + steps)) --repeat 1 > "$work/raw.csv" 2> "$work/err.txt"
rc=$?
[ $rc -eq 0 ] || { echo "gpu_profile: ncu exited $rc"; tail -5 "$work/err.txt"; }
python3 - "$work/raw.csv" "$steps" <<'PY' | tee "$work/table.txt"
import csv, sys, collections, re
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows:
    print("no kernels profiled"); sys.exit(1)
hdr, data = rows[0], rows[1:]
ki, mi, vi, ui, ids = (hdr.index(k) for k in ("Kernel Name", "Metric Name", "Metric Value", "Metric Unit", "ID"))
scale = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3, "second": 1e6, "s": 1e6}
def name(k):   # "void <unnamed>::gemv_vec_kernel<2, 1, 1, 2, 0>(gemv_args)" -> "gemv_vec_kernel<2, 1, 1, 2, 0>"
    k = k.replace("void ", "").replace("(anonymous namespace)::", "").replace("<unnamed>::", "").strip()
    return re.sub(r"\(.*", "", k)[:58]
ks = sorted((int(r[ids]), name(r[ki]), float(r[vi].replace(",", "")) * scale.get(r[ui], 1.0))
            for r in data if r[mi] == "gpu__time_duration.sum")
passes, cur = [], []
for _, n, us in ks:
    if n.startswith("embed") and cur:
        passes.append(cur); cur = []
    cur.append((n, us))
# passes[0] is the prompt's prefill; cur, the last, may be cut off by --launch-count
decode = passes[1:]
steps = min(int(sys.argv[2]), len(decode))
if not steps:
    print(f"no complete decode pass among {len(ks)} kernels"); sys.exit(1)
use = decode[-steps:]
tot = collections.OrderedDict()
for p in use:
    for n, us in p:
        c, t = tot.get(n, (0, 0.0)); tot[n] = (c + 1, t + us)
step_us = sum(t for c, t in tot.values()) / steps
print(f"one decode step: {len(use[-1])} kernels, {step_us:.1f} us of kernel time (mean of the last {steps} complete decode passes)")
print(f"{'kernel':58s} {'per step':>8s} {'us/step':>9s} {'us each':>8s} {'share':>6s}")
for n, (c, t) in sorted(tot.items(), key=lambda kv: -kv[1][1]):
    print(f"{n:58s} {c / steps:8.1f} {t / steps:9.1f} {t / c:8.2f} {100 * t / steps / step_us:5.1f}%")
PY
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT/gpu_profile"; cp "$work/table.txt" "$OUT/gpu_profile/"; gzip -c "$work/raw.csv" > "$OUT/gpu_profile/raw.csv.gz"; fi
