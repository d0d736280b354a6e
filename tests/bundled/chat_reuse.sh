#!/usr/bin/env bash
# Multi-turn chat keeps the KV cache between turns and prefills only what the
# re-rendered conversation adds. Turn 2's greedy reply must equal a one-shot
# greedy run on the whole rendered conversation (no cache reuse).
set -euo pipefail
strata=$1
chat=$(printf 'In the beginning\nAnd God said\n' | "$strata" generate -c tests/bundled/chat-chatml.yaml --chat)
turn1=$(printf '%s\n' "$chat" | sed -n 1,2p)
turn2=$(printf '%s\n' "$chat" | sed -n 3,4p)
[ -n "$turn1" ] && [ -n "$turn2" ] || { echo "chat printed too little:"; printf '%s\n' "$chat"; exit 1; }
prompt=$(printf '<|im_start|>system\nYou are the KJV.<|im_end|>\n<|im_start|>user\nIn the beginning<|im_end|>\n<|im_start|>assistant\n%s<|im_end|>\n<|im_start|>user\nAnd God said<|im_end|>\n<|im_start|>assistant\n' "$turn1"; echo x)
prompt=${prompt%x}
oneshot=$(printf '%s' "$prompt" | "$strata" generate -m models/tiny-kjv --cpu --greedy -n 12 -p - | tail -n 2)
if [ "$oneshot" != "$turn2" ]; then
  echo "turn 2 with cache reuse: [$turn2]"
  echo "one-shot on the rendered conversation: [$oneshot]"
  exit 1
fi
echo "chat reuse: turn 2 equals the one-shot run: [$turn2]"
echo "1 passed, 0 failed"
