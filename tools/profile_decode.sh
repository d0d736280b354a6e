#!/usr/bin/env bash
# Per-kernel decode profile on a GPU machine: builds a Qwen2.5-7B-shaped random
# model, runs a short greedy generation under Nsight Compute (kernel durations
# only) and prints the time per decode step by kernel name.
#   tools/profile_decode.sh BUILD_DIR OUT_DIR
set -euo pipefail
build=${1:-build-gpu}; out=${2:-/tmp/prof}
mkdir -p "$out"
model=${PROFILE_MODEL:-/tmp/q7b}
[ -f "$model/config.json" ] || python3 tools/make_random_model.py "$model" --shape qwen2.5-7b > "$out/make.txt" 2>&1
prompt=$(seq -s, 100 163)   # 64 prompt tokens
ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv --print-units base --graph-profiling node \
    "$build/strata" generate -m "$model" --tokens "$prompt" -n 9 --ctx 4096 > "$out/ncu.csv" 2> "$out/ncu.err" || true
python3 - "$out/ncu.csv" <<'PY'
import csv, collections, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr = rows[0]; rows = rows[1:]
ki = hdr.index("Kernel Name"); vi = hdr.index("Metric Value"); ii = hdr.index("ID")
def num(x):
    x = x.replace(',', '')
    try: return float(x)
    except ValueError: return None
per = [(int(r[ii].replace(',', '')), r[ki], num(r[vi])) for r in rows if num(r[vi]) is not None]
per.sort()
# a decode step ends with the argmax kernel; take steps 3..8 (graph replays)
ends = [i for i, (_, k, _) in enumerate(per) if "argmax" in k]
print(f"{len(per)} kernels, {len(ends)} argmax (prefill + decode steps)")
if len(ends) >= 4:
    lo, hi = ends[2] + 1, ends[-1] + 1
    steps = len(ends) - 3
    agg = collections.defaultdict(lambda: [0.0, 0])
    for _, k, v in per[lo:hi]:
        name = k.replace("<unnamed>::", "").replace("void ", "").split("(")[0][:70]
        agg[name][0] += v; agg[name][1] += 1
    tot = sum(v for v, _ in agg.values())
    print(f"per decode step (mean of {steps}): {tot / steps / 1e3:.1f} us of kernel time")
    for name, (v, n) in sorted(agg.items(), key=lambda x: -x[1][0]):
        print(f"  {v / steps / 1e3:9.1f} us  {n // steps:4d} launches  {v / n / 1e3:8.2f} us each  {name}")
PY
