#!/usr/bin/env bash
# Multi-turn chat keeps the KV cache between turns: turn 2 prefills only what
# the conversation adds after turn 1 (the reply's last token, which was never
# fed back, the end of that turn and the new user turn), reusing turn 1's
# prompt and its reply's tokens; and turn 2's reply equals a one-shot greedy
# run on the whole rendered conversation (no cache reuse).
#   chat_reuse.sh STRATA            the test
#   chat_reuse.sh --selftest STRATA the same check against a planted defect
#                                   (every turn prefilled whole): it must fail
set -euo pipefail
if [ "${1:-}" = --selftest ]; then
  strata=$2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # a strata whose --stats report no reuse: the check must catch it
  cat > "$tmp/strata" <<EOS
#!/usr/bin/env bash
"$strata" "\$@" 2> >(sed -E 's/([0-9]+) prompt tokens, [0-9]+ reused from the KV cache, [0-9]+ prefilled/\1 prompt tokens, 0 reused from the KV cache, \1 prefilled/' >&2)
EOS
  chmod +x "$tmp/strata"
  if bash "$0" "$tmp/strata" >"$tmp/out" 2>&1; then
    echo "selftest: the check passed with reuse disabled:"; cat "$tmp/out"; exit 1
  fi
  echo "selftest: the check fails when the cache is not reused: $(grep -m1 'reused' "$tmp/out" || true)"
  echo "1 passed, 0 failed"
  exit 0
fi
strata=$1
cfg=tests/bundled/chat-chatml.yaml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'In the beginning\nAnd God said\n' | "$strata" generate -c $cfg --chat --stats >"$tmp/out" 2>"$tmp/err"
turn1=$(sed -n 1,2p "$tmp/out")
turn2=$(sed -n 3,4p "$tmp/out")
[ -n "$turn1" ] && [ -n "$turn2" ] || { echo "chat printed too little:"; cat "$tmp/out" "$tmp/err"; exit 1; }
# chat turn N: P prompt tokens, R reused from the KV cache, F prefilled; G generated
read -r p1 r1 f1 g1 < <(sed -nE 's/^chat turn 1: ([0-9]+) prompt tokens, ([0-9]+) reused from the KV cache, ([0-9]+) prefilled; ([0-9]+) generated$/\1 \2 \3 \4/p' "$tmp/err")
read -r p2 r2 f2 g2 < <(sed -nE 's/^chat turn 2: ([0-9]+) prompt tokens, ([0-9]+) reused from the KV cache, ([0-9]+) prefilled; ([0-9]+) generated$/\1 \2 \3 \4/p' "$tmp/err")
[ -n "${p2:-}" ] || { echo "no per-turn statistics on stderr:"; cat "$tmp/err"; exit 1; }
# the cache holds turn 1's prompt and every reply token but the last (never fed back)
want=$((p1 + g1 - 1))
if [ "$r2" -ne "$want" ] || [ "$f2" -ne $((p2 - r2)) ] || [ "$r1" -ne 0 ]; then
  echo "turn 2 reused $r2 tokens and prefilled $f2 of $p2; want $want reused (turn 1: $p1 prompt + $g1 reply - 1)"
  exit 1
fi
# what turn 2 prefills is only the new part: the reply's last token + '<|im_end|>\n<|im_start|>user\n...<|im_start|>assistant\n'
new_part=$(printf '<|im_end|>\n<|im_start|>user\nAnd God said<|im_end|>\n<|im_start|>assistant\n' | "$strata" tokenize -m models/tiny-kjv --no-bos | wc -w)
if [ "$f2" -ne $((new_part + 1)) ]; then
  echo "turn 2 prefilled $f2 tokens; the new turn is $new_part tokens + the reply's last one"
  exit 1
fi
prompt=$(printf '<|im_start|>system\nYou are the KJV.<|im_end|>\n<|im_start|>user\nIn the beginning<|im_end|>\n<|im_start|>assistant\n%s<|im_end|>\n<|im_start|>user\nAnd God said<|im_end|>\n<|im_start|>assistant\n' "$turn1"; echo x)
prompt=${prompt%x}
oneshot=$(printf '%s' "$prompt" | "$strata" generate -m models/tiny-kjv --cpu --greedy -n 12 -p - | tail -n 2)
if [ "$oneshot" != "$turn2" ]; then
  echo "turn 2 with cache reuse: [$turn2]"
  echo "one-shot on the rendered conversation: [$oneshot]"
  exit 1
fi
echo "chat reuse: turn 2 reused $r2 of $p2 tokens, prefilled $f2, and equals the one-shot run: [$turn2]"
echo "1 passed, 0 failed"
