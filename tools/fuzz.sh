#!/usr/bin/env bash
# Runs strata's fuzz targets (tests/fuzz/README.md) with libFuzzer.
#
#   tools/fuzz.sh TARGET SECONDS [libFuzzer options...]   fuzz one target
#   tools/fuzz.sh all SECONDS                             every target in turn, SECONDS each
#   tools/fuzz.sh list                                    the targets
#   tools/fuzz.sh build                                   build the targets, and the whole
#                                                         project with the same clang (CI)
#
# Builds build-fuzz/ with clang (-DSTRATA_FUZZ=ON: -fsanitize=fuzzer,address,
# undefined) the first time. A run starts from the committed seeds
# (tests/fuzz/corpus/TARGET) and reproducers (tests/fuzz/regress/TARGET) and
# keeps what it learns in build-fuzz/corpus/TARGET (not committed), so the next
# run goes on from there. Every allocation above 256 MiB is a finding: no input
# of a few KiB justifies one. On a finding it prints the reproducer's path and
# exits 1: copy the file to tests/fuzz/regress/TARGET/, fix the bug, and ctest
# (fuzz_regress_TARGET) keeps it fixed. Prints "fuzz: TARGET: N runs in S s (C CPU s)".
# Environment: CC (default clang), FUZZ_DIR (default build-fuzz), FUZZ_NICE
# (nice level, default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
targets=$(sed -n 's/^set(ST_FUZZ_TARGETS \(.*\))$/\1/p' tests/fuzz/tests.cmake)
dir=${FUZZ_DIR:-build-fuzz}

usage() {
    echo "usage: tools/fuzz.sh TARGET|all SECONDS [libFuzzer options...] | tools/fuzz.sh list" >&2
    echo "targets: $targets" >&2
    exit 2
}

[ $# -ge 1 ] || usage
if [ "$1" = list ]; then echo "$targets" | tr ' ' '\n'; exit 0; fi
[ $# -ge 2 ] || [ "$1" = build ] || usage
target=$1 seconds=${2:-0}
shift $(( $# >= 2 ? 2 : 1 ))
case "$seconds" in ''|*[!0-9]*) echo "fuzz: SECONDS must be a whole number, not '$seconds'" >&2; usage ;; esac
if [ "$target" != all ] && [ "$target" != build ] && ! echo " $targets " | grep -q " $target "; then
    echo "fuzz: unknown target '$target'" >&2
    usage
fi

cc=${CC:-clang}
if ! command -v "$cc" >/dev/null; then
    echo "fuzz: $cc not found" >&2
    echo "hint: run 'tools/install-deps.sh --fuzz' (Debian/Ubuntu: clang and its libFuzzer runtime)" >&2
    exit 1
fi
if [ ! -f "$dir/build.ninja" ]; then
    CC=$cc cmake -S . -B "$dir" -G Ninja -DSTRATA_FUZZ=ON -DSTRATA_CUDA=OFF -DSTRATA_MPI=OFF \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTRATA_PYTHON="$root/.venv/bin/python3" >/dev/null
fi

run_one() {  # target seconds [options]
    local t=$1 s=$2
    shift 2
    cmake --build "$dir" --target "fuzz_$t" -- -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
    local work="$dir/corpus/$t" art="$dir/artifacts/$t" log="$dir/logs/$t.log"
    mkdir -p "$work" "$art" "$dir/logs"
    local dict=()
    [ -f "tests/fuzz/dict/$t.dict" ] && dict=(-dict="tests/fuzz/dict/$t.dict")
    local seeds=(tests/fuzz/corpus/"$t")
    [ -d "tests/fuzz/regress/$t" ] && seeds+=(tests/fuzz/regress/"$t")
    local rc=0
    [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm   # the targets write files
    local TIMEFORMAT='%U %S'
    { time ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1} \
      UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
      nice -n "${FUZZ_NICE:-10}" "$dir/fuzz/fuzz_$t" -max_total_time="$s" -timeout=20 -rss_limit_mb=2048 \
        -malloc_limit_mb=256 -print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}" "$@" \
        "$work" "${seeds[@]}" >"$log" 2>&1; } 2>"$log.cpu" || rc=$?
    local runs secs cpu
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^stat::.*//; s/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    cpu=$(awk '{printf "%.0f", $1 + $2}' "$log.cpu" 2>/dev/null)
    if [ "$rc" -ne 0 ]; then
        echo "fuzz: $t: FINDING after ${runs:-?} runs (exit $rc); log: $log" >&2
        grep -E 'ERROR|SUMMARY|fuzz property broken|Test unit written|malloc\(' "$log" | head -20 >&2 || true
        echo "hint: reproduce with '$dir/fuzz/fuzz_$t FILE'; keep the file in tests/fuzz/regress/$t/ once fixed" >&2
        return 1
    fi
    echo "fuzz: $t: ${runs:-0} runs in ${secs:-$s} s (${cpu:-?} CPU s), corpus $(ls "$work" | wc -l) files, no finding"
}

if [ "$target" = build ]; then
    # "any compiler": everything (library, strata, tests, benchmarks) builds with clang too
    cmake --build "$dir" -- -j"$(nproc 2>/dev/null || echo 2)"
    for t in $targets; do cmake --build "$dir" --target "fuzz_$t" -- -j"$(nproc 2>/dev/null || echo 2)" >/dev/null; done
    echo "fuzz: built every target and the whole project with $("$cc" --version | head -1)"
    exit 0
fi
if [ "$target" = all ]; then
    status=0
    for t in $targets; do run_one "$t" "$seconds" "$@" || status=1; done
    exit $status
fi
run_one "$target" "$seconds" "$@"
