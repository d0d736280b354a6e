#!/usr/bin/env bash
# strata's CPU stage against llama.cpp on the same cores, same files, in one run
# (issue 18; results in bench/RESULTS.md, method in docs/cpu-kernels.md).
#
#   bash bench/cpu_vs_llamacpp.sh [BUILD_DIR=build]
#
# 1. Builds llama.cpp's CPU tools (shared/baseline/build-llamacpp.sh DIR cpu)
#    unless $LLAMA_BIN/llama-bench exists.
# 2. Makes the comparison model once (shared/baseline/make_wide_kjv.py: Qwen3
#    layout at Qwen2.5-0.5B width, 361 M parameters, F16) and quantizes it with
#    llama-quantize to Q8_0 and Q4_K_M (the targets) and to F32, BF16, Q4_0,
#    Q4_1, Q5_0, Q5_1, IQ4_NL, Q5_K_M, Q6_K (every dtype the CPU reads).
# 3. Measures, with $THREADS threads each:
#    - the machine: read bandwidth and fp32 FMA peak, and every dtype's decode
#      GEMV and prefill GEMM (build/bench/bench_cpu_matmul, interleaved);
#    - per file: llama-bench decode (-p 0 -n $DECODE) and prefill (-p $PROMPT
#      -n 0), then strata bench --cpu (same token counts), in $REPS rounds.
# 4. Prints the ratios and exits 1 when a target is missed:
#    - decode >= 1.2x llama.cpp for F16, Q8_0 and Q4_K_M;
#    - decode >= 80% of the read bandwidth for every file (weight bytes read
#      per token x tok/s) and every dtype's GEMV in bench_cpu_matmul, paired
#      in time: a decode round against the read strata bench measured in the
#      same process (the median over the rounds), a GEMV against the better of
#      the reads right before and after it (the
#      dev box's two vCPUs read 34-36 or 59-61 GB/s together, switching every
#      few seconds: bench/RESULTS.md); the best read of the whole run is
#      printed beside it ("of best read");
#    - prefill >= 1.2x llama.cpp's pp$PROMPT on F16, Q8_0 and Q4_K_M (where
#      llama.cpp finishes it);
#    - prefill >= 60% of the fp32 FMA peak (2 x matmul weights x tok/s): the
#      register-only peak, the ceiling of any fp32 GEMM (the BLAS sgemm of the
#      same run is printed beside it).
# REPS rounds, each running llama-bench (decode, prefill) and strata bench once,
# interleaved; the best round of each side counts (the machine is shared: the
# best round is the least disturbed), every round is in the JSON. `uptime` is
# printed before and after: run it when the machine is quiet. llama.cpp's build
# and the model files (about 6 GB for every type) live outside the source
# tree, in a cache folder:
# CACHE (${XDG_CACHE_HOME:-~/.cache}/strata-cpu-bench), WORK ($CACHE/work: model
# files, logs, JSON), LLAMA_DIR ($CACHE/llamacpp). Other environment: THREADS
# (2), REPS (3), PROMPT (128), DECODE (64), BASELINE (the shared/baseline
# folder), PYTHON (.venv/bin/python3), TYPES (the file types, default all),
# JSON (output file).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
THREADS=${THREADS:-2}; REPS=${REPS:-3}; PROMPT=${PROMPT:-128}; DECODE=${DECODE:-64}
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata-cpu-bench}
WORK=${WORK:-$CACHE/work}; LLAMA_DIR=${LLAMA_DIR:-$CACHE/llamacpp}
case "$WORK/" in "$root"/*) echo "error: WORK=$WORK is inside the source tree; hint: set CACHE or WORK elsewhere" >&2; exit 2;; esac
case "$LLAMA_DIR/" in "$root"/*) echo "error: LLAMA_DIR=$LLAMA_DIR is inside the source tree; hint: set CACHE or LLAMA_DIR elsewhere" >&2; exit 2;; esac
PYTHON=${PYTHON:-$root/.venv/bin/python3}
TYPES=${TYPES:-"F16 Q8_0 Q4_K_M F32 BF16 Q4_0 Q4_1 Q5_0 Q5_1 IQ4_NL Q5_K_M Q6_K"}
JSON=${JSON:-$WORK/cpu_vs_llamacpp.json}
if [ -z "${BASELINE:-}" ]; then
  for d in "$root/shared/baseline" "$root/../shared/baseline" "$root/../../shared/baseline" /work/shared/baseline; do
    [ -f "$d/make_wide_kjv.py" ] && { BASELINE=$d; break; }
  done
fi
[ -n "${BASELINE:-}" ] || { echo "error: shared/baseline not found; hint: set BASELINE=<dir with make_wide_kjv.py>" >&2; exit 2; }
for f in "$build/strata" "$build/bench/bench_cpu_matmul"; do
  [ -x "$f" ] || { echo "error: $f missing; hint: cmake --build $build" >&2; exit 2; }
done

echo "== load before the run: $(uptime)"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
bin=$LLAMA_DIR/bin
if [ ! -x "$bin/llama-bench" ]; then
  echo "== building llama.cpp (CPU) into $LLAMA_DIR"
  mkdir -p "$(dirname "$LLAMA_DIR")"
  bash "$BASELINE/build-llamacpp.sh" "$LLAMA_DIR" cpu >/dev/null \
    || { echo "error: llama.cpp build failed (see $LLAMA_DIR.log)" >&2; exit 2; }
fi
export LD_LIBRARY_PATH="$bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"   # its shared libraries, wherever the build was made
for b in llama-bench llama-quantize; do
  [ -x "$bin/$b" ] || { echo "error: $bin/$b missing; hint: remove $LLAMA_DIR and rerun to rebuild" >&2; exit 2; }
done
mkdir -p "$WORK"
f16=$WORK/wide-f16.gguf
[ -s "$f16" ] || "$PYTHON" "$BASELINE/make_wide_kjv.py" "$root/models/tiny-kjv.gguf" "$f16" >/dev/null
for t in $TYPES; do
  lt=$(echo "$t" | tr 'A-Z' 'a-z'); f=$WORK/wide-$lt.gguf
  [ "$t" = F16 ] || [ -s "$f" ] || "$bin/llama-quantize" "$f16" "$f" "$t" "$THREADS" >"$f.log" 2>&1 \
    || { echo "error: llama-quantize $t failed (see $f.log)" >&2; exit 1; }
done

echo "== kernels: bench_cpu_matmul --threads $THREADS"
"$build/bench/bench_cpu_matmul" --threads "$THREADS" --reps "$REPS" --tokens "$PROMPT" --json "$WORK/matmul.json" \
  | tee "$WORK/matmul.txt"

for t in $TYPES; do
  lt=$(echo "$t" | tr 'A-Z' 'a-z'); f=$WORK/wide-$lt.gguf
  echo "== $t: llama-bench, strata bench, $REPS rounds"
  for rep in $(seq "$REPS"); do   # interleaved, so a burst of load on the shared machine hits both sides alike
    "$bin/llama-bench" -m "$f" -t "$THREADS" -r 1 -p 0 -n "$DECODE" -o json >"$WORK/llama-tg-$lt-$rep.json" 2>/dev/null \
      || echo '[]' >"$WORK/llama-tg-$lt-$rep.json"
    timeout 900 "$bin/llama-bench" -m "$f" -t "$THREADS" -r 1 -p "$PROMPT" -n 0 -o json >"$WORK/llama-pp-$lt-$rep.json" \
      2>/dev/null || echo '[]' >"$WORK/llama-pp-$lt-$rep.json"   # this llama.cpp crashed in prompt processing of some quantized files before
    "$build/strata" bench -m "$f" --cpu --threads "$THREADS" --prompt-tokens "$PROMPT" --decode-tokens "$DECODE" \
      --repeat 1 --ctx $((PROMPT + DECODE + 16)) --json >"$WORK/strata-$lt-$rep.json" 2>"$WORK/strata-$lt-$rep.err" \
      || { echo "error: strata bench failed on $f (see $WORK/strata-$lt-$rep.err)" >&2; exit 1; }
  done
done
echo "== load after the run: $(uptime)"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

"$PYTHON" - "$WORK" "$JSON" "$load_before" "$load_after" "$THREADS" "$PROMPT" "$DECODE" "$REPS" $TYPES <<'EOF'
import json, sys
import numpy as np
from gguf import GGUFReader
work, out, lb, la, threads, prompt, decode, reps = sys.argv[1:9]
types = sys.argv[9:]
reps = int(reps)
mm = json.load(open(f"{work}/matmul.json"))
fma = mm["fma_gflops"]
# the read bandwidth: the best streaming read of this run, bench_cpu_matmul's
# (1 GiB, its own threads) or strata bench's (512 MiB, the stage's pool) --
# the higher one makes the decode target the stricter
strata_reads = []
for t in types:
    try:
        for rep in range(1, reps + 1):
            s = json.load(open(f"{work}/strata-{t.lower()}-{rep}.json"))
            strata_reads += [d["read_gbps"] for d in s["devices"] if d.get("kind") == "cpu" and d.get("read_gbps")]
    except Exception:
        pass
read = max([mm["read_gbps"]] + strata_reads)
read_src = "bench_cpu_matmul" if read == mm["read_gbps"] else "strata bench"

def llama_ts(kind, lt):
    """llama-bench's tok/s of each round (rounds it did not finish are left out)"""
    v = []
    for rep in range(1, reps + 1):
        try:
            runs = json.load(open(f"{work}/llama-{kind}-{lt}-{rep}.json"))
        except Exception:
            runs = []
        v += [runs[0]["avg_ts"]] if runs else []
    return v

def matmul_params(path):
    """weights of the matrices a token multiplies (every 2-D tensor but the embedding table)"""
    r = GGUFReader(path)
    names = {t.name for t in r.tensors}
    n = 0
    for t in r.tensors:
        if len(t.shape) == 2 and (t.name != "token_embd.weight" or "output.weight" not in names):
            n += int(np.prod([int(d) for d in t.shape]))
    return n

rows, fails = [], []
for t in types:
    lt = t.lower()
    ss = [json.load(open(f"{work}/strata-{lt}-{rep}.json")) for rep in range(1, reps + 1)]
    sdec = [v for s in ss for v in s["decode_tok_s_runs"]]; spre = [v for s in ss for v in s["prefill_tok_s_runs"]]
    ltgs, lpps = llama_ts("tg", lt), llama_ts("pp", lt)
    # best round on each side: the machine is shared, the best round is the least disturbed one
    dec, pre = max(sdec), max(spre)
    # each round's decode against the read of the same strata bench process (same minute)
    paired = []
    for x in ss:
        rr = [d["read_gbps"] for d in x["devices"] if d.get("kind") == "cpu" and d.get("read_gbps")]
        if rr:
            paired += [v * x["roofline"]["weight_bytes_per_token"] / 1e9 / rr[0] for v in x["decode_tok_s_runs"]]
    ltg, lpp = (max(ltgs) if ltgs else None), (max(lpps) if lpps else None)
    s = ss[0]
    wb = s["roofline"]["weight_bytes_per_token"]
    params = matmul_params(f"{work}/wide-{lt}.gguf")
    gflops = 2.0 * params * pre / 1e9
    row = dict(type=t, decode_tok_s=dec, prefill_tok_s=pre, llama_decode_tok_s=ltg, llama_prefill_tok_s=lpp,
               weight_bytes_per_token=wb, decode_gbps=wb * dec / 1e9, decode_of_best_read=wb * dec / 1e9 / read,
               decode_of_read=float(np.median(paired)) if paired else wb * dec / 1e9 / read, decode_of_read_rounds=paired,
               prefill_gflops=gflops, prefill_of_fma=gflops / fma,
               decode_vs_llama=dec / ltg if ltg else None, prefill_vs_llama=pre / lpp if lpp else None,
               tokens_valid=all(x["tokens_valid"] for x in ss), decode_tok_s_rounds=sdec, prefill_tok_s_rounds=spre,
               llama_decode_tok_s_rounds=ltgs, llama_prefill_tok_s_rounds=lpps)
    rows.append(row)
    key = t in ("F16", "Q8_0", "Q4_K_M")
    if key and (not ltg or dec < 1.2 * ltg): fails.append(f"{t}: decode {dec:.1f} tok/s < 1.2 x llama.cpp {ltg}")
    if key and lpp and pre < 1.2 * lpp: fails.append(f"{t}: prefill {pre:.1f} tok/s < 1.2 x llama.cpp {lpp:.1f}")
    if row["decode_of_read"] < 0.8: fails.append(f"{t}: decode at {100 * row['decode_of_read']:.0f}% of the read bandwidth (median round, paired)")
    if row["prefill_of_fma"] < 0.6: fails.append(f"{t}: prefill at {100 * row['prefill_of_fma']:.0f}% of the fp32 FMA peak")
    if not s["tokens_valid"]: fails.append(f"{t}: strata produced invalid token ids")
for k in mm["results"]:
    k["gemv_of_best_read"] = k["gemv_gbps"] / read
    k["gemv_of_read"] = k.get("gemv_of_read_paired", k["gemv_of_best_read"])
    if k["gemv_of_read"] < 0.8: fails.append(f"bench_cpu_matmul {k['dtype']}: GEMV at {100 * k['gemv_of_read']:.0f}% of read (paired)")
    if not k["exact"]: fails.append(f"bench_cpu_matmul {k['dtype']}: not bit-identical to the portable path")

print(f"\nmachine: read {read:.2f} GB/s ({read_src}; bench_cpu_matmul {mm['read_gbps']:.2f}, strata bench "
      f"{max(strata_reads) if strata_reads else 0:.2f}; every strata bench read: "
      f"{' '.join('%.1f' % v for v in strata_reads)}), fp32 FMA peak {fma:.1f} GFLOP/s ({mm['isa']}, {threads} threads); "
      f"load average before {lb}, after {la}")
if mm.get("blas"):
    b = mm["blas"]
    print(f"BLAS cblas_sgemm on the fp32 tiles: {b['gemm_gflops'][0]:.1f} / {b['gemm_gflops'][1]:.1f} GFLOP/s "
          f"({100 * min(b['gemm_gflops']) / fma:.0f}% of the FMA peak), batch invariant: {b['batch_invariant']}")
print(f"{'dtype':8} {'GEMV GB/s':>10} {'of read':>8} {'of best':>8} {'GEMM GF/s':>18} {'of fma':>7}  (bench_cpu_matmul; of read: paired)")
for k in mm["results"]:
    print(f"{k['dtype']:8} {k['gemv_gbps']:10.2f} {100 * k['gemv_of_read']:7.0f}% {100 * k['gemv_of_best_read']:7.0f}% "
          f"{k['gemm_gflops'][0]:8.1f} /{k['gemm_gflops'][1]:8.1f} {100 * k['gemm_of_fma']:6.0f}%")
print(f"{'file':8} {'decode t/s':>11} {'llama':>8} {'ratio':>6} {'GB/s':>7} {'of read':>8} {'of best':>8} | "
      f"{'pp'+prompt+' t/s':>10} {'llama':>8} {'ratio':>6} {'GFLOP/s':>8} {'of fma':>7}")
fmt = lambda v, f: (f % v) if v is not None else "-"
for r in rows:
    print(f"{r['type']:8} {r['decode_tok_s']:11.2f} {fmt(r['llama_decode_tok_s'], '%8.2f')} "
          f"{fmt(r['decode_vs_llama'], '%5.2fx'):>6} {r['decode_gbps']:7.2f} {100 * r['decode_of_read']:7.0f}% "
          f"{100 * r['decode_of_best_read']:7.0f}% | "
          f"{r['prefill_tok_s']:10.1f} {fmt(r['llama_prefill_tok_s'], '%8.1f')} {fmt(r['prefill_vs_llama'], '%5.2fx'):>6} "
          f"{r['prefill_gflops']:8.1f} {100 * r['prefill_of_fma']:6.0f}%")
json.dump(dict(bench="cpu_vs_llamacpp", threads=int(threads), prompt=int(prompt), decode=int(decode),
               load_before=lb, load_after=la, read_gbps=read, fma_gflops=fma, commit=mm["commit"],
               matmul=mm["results"], files=rows, failures=fails), open(out, "w"), indent=1)
print(f"\nJSON: {out}")
if fails:
    print("\nmissed targets:\n  " + "\n  ".join(fails))
    sys.exit(1)
print("\nall targets met")
EOF
