#!/usr/bin/env bash
# Cold start to first token with the bundled model: the wall time of a whole
# `strata generate -n 1` process (exec, inventory, model mmap, tokenizer load,
# plan, engine, prefill, one token), median of N runs. The first run also pays
# for reading the files from disk; the page cache serves the rest.
#   bench/cold_start.sh [BUILD_DIR] [N]     prints a table and writes /tmp/strata_cold_start.json
set -euo pipefail
build=${1:-build}
n=${2:-11}
cd "$(dirname "$0")/.."
times=()
for src in models/tiny-kjv models/tiny-kjv.gguf; do
  for i in $(seq "$n"); do
    t0=$(date +%s%N)
    "$build/strata" generate -m "$src" -p "In the beginning" -n 1 --greedy >/dev/null
    t1=$(date +%s%N)
    times+=("$src $(( (t1 - t0) / 1000 ))")
  done
done
python3 - "$n" "${times[@]}" <<'PY'
import json, statistics, sys
n = int(sys.argv[1]); rows = {}
for item in sys.argv[2:]:
    src, us = item.rsplit(" ", 1); rows.setdefault(src, []).append(int(us) / 1000)
out = {}
print(f"{'model':<24} {'first ms':>9} {'median ms':>10} {'max ms':>8}")
for src, ms in rows.items():
    med = statistics.median(ms); out[src] = {"first_ms": ms[0], "median_ms": med, "max_ms": max(ms), "runs": n}
    print(f"{src:<24} {ms[0]:9.1f} {med:10.1f} {max(ms):8.1f}")
json.dump(out, open("/tmp/strata_cold_start.json", "w"), indent=1)
ok = all(v["median_ms"] < 1000 for v in out.values())
print("target: median < 1000 ms:", "met" if ok else "MISSED")
sys.exit(0 if ok else 1)
PY
