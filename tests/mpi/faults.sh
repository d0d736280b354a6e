#!/usr/bin/env bash
# Faults across ranks end every rank with an error naming the rank (and host),
# in bounded time, never a hang (docs/multihost.md):
#   - a config naming a rank that does not exist: a positioned error, exit 2,
#     printed once (rank 0), under mpirun and without it;
#   - a rank that cannot find its device, or cannot open its weights (its own
#     config through mpirun's MPMD syntax): rank 0 reports "rank 1 (host): ...";
#   - a stage on rank 1 whose layer turns the activations non-finite: the
#     pass's error on rank 0 says which rank, stage and layer;
#   - a rank killed (SIGKILL) in the middle of a generation: mpirun ends the
#     others within 30 s with an error naming the dead rank;
#   - a rank that stops answering (SIGSTOP): the watchdog (STRATA_MPI_TIMEOUT)
#     ends the run within the timeout plus a margin.
#   faults.sh STRATA
set -uo pipefail
strata=$(realpath "$1")
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
host=$(hostname)
cd "$root"

cfg() {   # out, rank of the second device, its selector, model path
  cat > "$1" <<EOF
version: 1
model: {path: "$4"}
devices:
  - {device: cpu, name: first, threads: 1}
  - {device: $3, name: second, rank: $2$( [ "$3" = cpu ] && echo ", threads: 1")}
placement:
  strategy: manual
  manual:
    - {device: first, layers: 0-1}
    - {device: second, layers: 2-3}
context: 1024
EOF
}
sed_err() { sed 's/^/    /' "$1" | head -20; }

# -- a rank that does not exist: positioned, exit 2, once
cfg "$tmp/rank2.yaml" 2 cpu "$root/models/tiny-kjv"
"${mpirun[@]}" -np 2 "$strata" generate -c "$tmp/rank2.yaml" --tokens 1,2,3 -n 2 > /dev/null 2> "$tmp/err"
rc=$?
want="$tmp/rank2.yaml:5:39: devices[1].rank: second is on rank 2, but 2 ranks are running (0..1)"
if [ $rc -eq 2 ] && grep -qF "$want" "$tmp/err" && [ "$(grep -cF "$want" "$tmp/err")" -eq 1 ] &&
   grep -qF "hint: launch with 'mpirun -np 3'" "$tmp/err"; then
  ok "rank 2 of 2: exit 2, '$want' once"
else
  bad "rank 2 of 2: exit $rc"; sed_err "$tmp/err"
fi
cfg "$tmp/rank1.yaml" 1 cpu "$root/models/tiny-kjv"
"$strata" generate -c "$tmp/rank1.yaml" --tokens 1,2,3 -n 2 > /dev/null 2> "$tmp/err"
rc=$?
if [ $rc -eq 2 ] && grep -qF "$tmp/rank1.yaml:5:39: devices[1].rank: second is on rank 1, another process" "$tmp/err"; then
  ok "rank 1 without mpirun: exit 2, positioned"
else
  bad "rank 1 without mpirun: exit $rc"; sed_err "$tmp/err"
fi

# -- rank 1 cannot find its device (no such GPU there): rank 0 names rank 1 and the selector
cfg "$tmp/gpu.yaml" 1 cuda:7 "$root/models/tiny-kjv"
timeout 60 "${mpirun[@]}" -np 2 "$strata" generate -c "$tmp/gpu.yaml" --tokens 1,2,3 -n 2 > /dev/null 2> "$tmp/err"
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -qF "devices: 'cuda:7' is not on rank 1 ($host)" "$tmp/err"; then
  ok "rank 1 without the GPU: exit $rc, $(grep -oF "'cuda:7' is not on rank 1 ($host)" "$tmp/err" | head -1)"
else
  bad "rank 1 without the GPU: exit $rc"; sed_err "$tmp/err"
fi

# -- rank 1 cannot open its weights (its own config names a file that is not there)
cfg "$tmp/good.yaml" 1 cpu "$root/models/tiny-kjv"
cfg "$tmp/nofile.yaml" 1 cpu "$tmp/no-such-model.gguf"
timeout 60 "${mpirun[@]}" -np 1 "$strata" generate -c "$tmp/good.yaml" --tokens 1,2,3 -n 2 : \
  -np 1 "$strata" generate -c "$tmp/nofile.yaml" --tokens 1,2,3 -n 2 > /dev/null 2> "$tmp/err"
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -qE "^error: rank 1 \($host\): .*no-such-model.gguf" "$tmp/err"; then
  ok "rank 1 without its weights: exit $rc, $(grep -m1 -oE "rank 1 \($host\): .{0,60}" "$tmp/err")"
else
  bad "rank 1 without its weights: exit $rc"; sed_err "$tmp/err"
fi

# -- a stage that fails in a pass on rank 1 (a weight of layer 1 set to +inf): rank 0 reports where, naming rank 1
py=${STRATA_PYTHON:-$root/.venv/bin/python3}
cp tests/fixtures/models/qwen2-tiny/qwen2-tiny-f32.gguf "$tmp/poison.gguf"
"$py" - "$tmp/poison.gguf" <<'PY'
import struct, sys, gguf
off = [t.data_offset for t in gguf.GGUFReader(sys.argv[1]).tensors if t.name == "blk.1.ffn_down.weight"][0]
with open(sys.argv[1], "r+b") as f:
    f.seek(off)
    f.write(struct.pack("<f", float("inf")))
PY
cat > "$tmp/poison.yaml" <<EOF
version: 1
model: {path: "$tmp/poison.gguf"}
devices:
  - {device: cpu, name: a, threads: 1}
  - {device: cpu, name: b, threads: 1, rank: 1}
placement: {strategy: manual, manual: [{device: a, layers: 0-0}, {device: b, layers: 1-1}]}
EOF
timeout 60 "${mpirun[@]}" -np 2 "$strata" generate -c "$tmp/poison.yaml" --tokens 1,2,3 -n 3 > /dev/null 2> "$tmp/err"
rc=$?
if [ $rc -eq 1 ] && grep -qF "error: rank 1 ($host): stage 1 (" "$tmp/err" &&
   grep -qF "the output of layer 1 holds an infinity" "$tmp/err"; then
  ok "a non-finite layer on rank 1: exit 1, $(grep -m1 -oE "rank 1 \($host\): stage 1 .{0,50}" "$tmp/err")"
else
  bad "a non-finite layer on rank 1: exit $rc"; sed_err "$tmp/err"
fi

# the pid of a rank started by the mpirun whose pid is $1
rank_pid() {
  for p in $(pgrep -P "$1"); do
    if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then echo "$p"; return; fi
  done
}

# start a long generation on 2 ranks, wait for its first words; $1: extra environment
start_long() {
  env "$@" "${mpirun[@]}" -np 2 "$strata" generate -c "$tmp/good.yaml" -p "In the beginning" -n 1000 --temp 0 \
    > "$tmp/out" 2> "$tmp/err" &
  mpid=$!
  for _ in $(seq 600); do
    [ "$(wc -c < "$tmp/out")" -gt 40 ] && break
    sleep 0.1
  done
  victim=$(rank_pid "$mpid" 1)
}

# -- SIGKILL of rank 1 mid-generation: every rank ends, with an error, within 30 s
start_long
if [ -z "$victim" ]; then
  bad "kill: rank 1 not found"; kill "$mpid"; wait "$mpid"
else
  t0=$(date +%s.%N)
  kill -9 "$victim"
  for _ in $(seq 300); do kill -0 "$mpid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$mpid" 2>/dev/null; then
    bad "kill: mpirun still runs 30 s after rank 1 died"; kill -9 "$mpid"; wait "$mpid"; sed_err "$tmp/err"
  else
    wait "$mpid"; rc=$?
    dt=$(echo "$(date +%s.%N) - $t0" | bc)
    left=$(pgrep -f "$strata generate -c $tmp/good.yaml" | wc -l)
    if [ $rc -ne 0 ] && [ "$left" -eq 0 ] && grep -qiE "rank 1 .*(exited on signal 9|killed)|process rank 1" "$tmp/err"; then
      ok "kill -9 rank 1 after $(wc -c < "$tmp/out") bytes of output: all ranks ended in ${dt}s, exit $rc"
    else
      bad "kill -9 rank 1: exit $rc, $left strata processes left"; sed_err "$tmp/err"
    fi
  fi
fi

# -- SIGSTOP of rank 1: the watchdog ends the run (rank 0 waits for its answer at most 5 s)
start_long STRATA_MPI_TIMEOUT=5
if [ -z "$victim" ]; then
  bad "stop: rank 1 not found"; kill "$mpid"; wait "$mpid"
else
  t0=$(date +%s.%N)
  kill -STOP "$victim"
  for _ in $(seq 300); do kill -0 "$mpid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$mpid" 2>/dev/null; then
    bad "stop: mpirun still runs 30 s after rank 1 stopped"; kill -9 "$victim" "$mpid"; wait "$mpid"; sed_err "$tmp/err"
  else
    wait "$mpid"; rc=$?
    dt=$(echo "$(date +%s.%N) - $t0" | bc)
    if [ $rc -ne 0 ] && grep -qF "nothing from rank 1 ($host) within 5 s" "$tmp/err" &&
       grep -qF "error: rank 0 ($host)" "$tmp/err"; then
      ok "SIGSTOP rank 1: the watchdog ended every rank in ${dt}s, exit $rc"
    else
      bad "SIGSTOP rank 1: exit $rc"; sed_err "$tmp/err"
    fi
  fi
  kill -9 "$victim" 2>/dev/null
fi

san_check
echo "$passed passed, $fail failed"
[ "$fail" -eq 0 ]
