#!/usr/bin/env bash
# Injected-fault walk (docs/faults.md): runs a strata command once to count the
# fault sites of KIND it reaches (STRATA_FAULT=count), then once per site N
# with STRATA_FAULT=KIND:N, and asserts for every N that the run
#   - ends within 60 s (no hang) with exit code 1, or 2 when what failed was
#     reading a configuration file (deploy YAML, numerics profile: a config error
#     class, like a missing file), and an "error: " line that names the fault
#     (out of memory / read failed / a failed link transfer), or
#   - recovers: exit 0 with exactly the output of the run without faults, where
#     the failed event is one that may be done without (RECOVERABLE, a regex
#     matched against strata's "STRATA_FAULT=... fails here (what)" line;
#     default: the tokenizer's pre-token cache); any other fault that ends in
#     exit 0 was ignored, which is a failure;
#   - and in either case prints no sanitizer report (ASan, LeakSanitizer, UBSan)
#     and no crash.
# usage: walk.sh STRATA KIND -- strata arguments...
set -uo pipefail
strata=$1 kind=$2
shift 3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export UBSAN_OPTIONS=print_stacktrace=1

STRATA_FAULT=count "$strata" "$@" >"$tmp/ref.out" 2>"$tmp/ref.err"
rc=$?
if [ $rc -ne 0 ]; then echo "walk: the run without faults failed (exit $rc):"; cat "$tmp/ref.err"; exit 1; fi
n=$(sed -n "s/^strata: fault sites:.* $kind \([0-9]*\).*/\1/p; s/^strata: fault sites: $kind \([0-9]*\).*/\1/p" "$tmp/ref.err" | head -1)
if [ -z "$n" ] || [ "$n" -eq 0 ]; then
    echo "walk: no '$kind' site counted (the hooks are gone?):"; cat "$tmp/ref.err"; exit 1
fi
case $kind in
    alloc) want='out of (host )?memory' ;;
    read) want='read failed|Input/output error|injected' ;;
    dev_alloc) want='out of memory' ;;
    link) want='link: sending .* failed' ;;
esac

fail=0 errors=0 recovered=0
for ((i = 1; i <= n; i++)); do
    STRATA_FAULT=$kind:$i timeout 60 "$strata" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    why=""
    if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|Segmentation|Aborted' "$tmp/err"; then
        why="a sanitizer report or crash"
    elif [ $rc -eq 124 ]; then
        why="it hung (killed after 60 s)"
    elif [ $rc -eq 0 ]; then
        note=$(grep -m1 'STRATA_FAULT=.* fails here' "$tmp/err")
        if ! echo "$note" | grep -qE "${RECOVERABLE:-pre-token cache}"; then
            why="exit 0: the fault was ignored (${note:-no 'fails here' line})"
        elif cmp -s "$tmp/out" "$tmp/ref.out"; then recovered=$((recovered + 1)); continue
        else why="exit 0 with different output"
        fi
    else
        line=$(grep -m1 '^error: ' "$tmp/err")
        config=0
        [ "$kind" = read ] && echo "$line" | grep -qE '\.yaml|numerics profile' && config=1
        if [ -z "$line" ]; then why="exit $rc without an 'error: ' line"
        elif ! grep -qE "$want" "$tmp/err"; then why="the message does not name the fault ($want)"
        elif [ $config -eq 1 ] && [ $rc -ne 2 ]; then why="exit $rc for a config file (want 2)"
        elif [ $config -eq 0 ] && [ $rc -ne 1 ]; then why="exit $rc (want 1)"
        else errors=$((errors + 1)); continue
        fi
    fi
    echo "walk: STRATA_FAULT=$kind:$i: $why (exit $rc)"
    sed 's/^/    /' "$tmp/err" | head -30
    fail=1
done
echo "walk: $kind: $n sites: $errors clean errors, $recovered recovered with the same output$([ $fail -ne 0 ] && echo ', FAILURES above')"
exit $fail
