#!/usr/bin/env bash
# --chat --raw continues one text across turns: turn 2's greedy reply must
# equal a one-shot greedy run on turn 1's prompt ids + turn 1's reply ids (all
# of them, the last one too, though it was never fed back during turn 1) +
# turn 2's ids.
set -euo pipefail
strata=$1
m=models/tiny-kjv
chat=$(printf 'In the beginning\nAnd God said\n' | "$strata" generate -m $m --cpu --chat --raw --greedy -n 8)
turn2=$(printf '%s\n' "$chat" | sed -n 2p)
p1=$(printf 'In the beginning' | "$strata" tokenize -m $m | tr ' ' ,)
r1=$("$strata" generate -m $m --cpu --tokens "$p1" -n 8)
p2=$(printf 'And God said' | "$strata" tokenize -m $m --no-bos --no-special | tr ' ' ,)
r2=$("$strata" generate -m $m --cpu --tokens "$p1,$r1,$p2" -n 8)
oneshot=$("$strata" detokenize -m $m --skip-special "$r2")
if [ "$oneshot" != "$turn2" ]; then
  echo "raw chat turn 2: [$turn2]"
  echo "one-shot on turn 1 + its whole reply + turn 2: [$oneshot]"
  exit 1
fi
echo "raw chat: turn 2 equals the one-shot run: [$turn2]"
echo "1 passed, 0 failed"
