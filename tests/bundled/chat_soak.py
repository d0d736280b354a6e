#!/usr/bin/env python3
"""A long chat through `strata generate --chat`, driven turn by turn on
stdin/stdout like a person at a terminal:

  chat_soak.py STRATA [--config FILE] [--tokens N] [--turns-min T] [--cpu]

  * the conversation goes on far past the context: it keeps going (exit 0),
    the oldest exchanges are dropped with a notice on stderr, and the system
    prompt is kept (a /save at the end shows it first);
  * resident memory is flat after warm-up (the first 10 turns): it grows by
    less than 1 MiB over the rest (not judged under AddressSanitizer, whose
    quarantine holds freed memory);
  * the same seed gives the same text: a second run of the same turns prints
    the same replies.
At least N generated tokens (default 20,000) over at least T turns (default 20).
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

args = sys.argv[1:]
STRATA = os.path.abspath(args[0])
CFG = args[args.index("--config") + 1] if "--config" in args else "tests/bundled/chat-chatml.yaml"
TOKENS = int(args[args.index("--tokens") + 1]) if "--tokens" in args else 20000
TURNS_MIN = int(args[args.index("--turns-min") + 1]) if "--turns-min" in args else 20
SYSTEM = "You are the King James Bible, and you never forget it."
QUESTIONS = ["Who made the heaven and the earth?", "And what did God say?", "Tell me of Moses.",
             "What is the law?", "Who was David?", "Sing a psalm.", "What did the prophets say?",
             "Tell me of the sea.", "Where is Jerusalem?", "What is wisdom?"]


def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(save_path):
    cmd = [STRATA, "generate", "-c", CFG, "--chat", "--stats", "--system", SYSTEM, "-n", "200", "--temp", "0.8",
           "--seed", "1234"]
    if "--cpu" in args:
        cmd.append("--cpu")
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         bufsize=1)
    # the replies are read as they come (a full pipe would stop strata mid-reply)
    out_parts = []
    reader = threading.Thread(target=lambda: out_parts.append(p.stdout.read()), daemon=True)
    reader.start()
    replies, notices, generated, turn, rss = [], 0, 0, 0, {}
    while generated < TOKENS or turn < TURNS_MIN:
        turn += 1
        p.stdin.write(QUESTIONS[turn % len(QUESTIONS)] + f" ({turn})\n")
        p.stdin.flush()
        # the reply is on stdout; the turn's statistics line on stderr ends it
        while True:
            line = p.stderr.readline()
            if not line:
                raise RuntimeError(f"strata ended in turn {turn} (exit {p.wait()})")
            if line.startswith("error:"):
                raise RuntimeError(f"turn {turn}: " + line + p.stderr.readline())
            if "the oldest" in line and "dropped" in line:
                notices += 1
                if "the system prompt is kept" not in line:
                    raise RuntimeError("the notice does not say the system prompt is kept: " + line)
            if line.startswith(f"chat turn {turn}:"):
                generated += int(line.rsplit(";", 1)[1].split()[0])
                break
        if turn == 10:
            rss["warm"] = rss_kb(p.pid)
    rss["end"] = rss_kb(p.pid)
    p.stdin.write(f"/save {save_path}\n/exit\n")
    p.stdin.flush()
    p.stdin.close()
    p.wait(timeout=60)
    reader.join(timeout=60)
    replies = "".join(out_parts)
    return p.returncode, replies, notices, generated, turn, rss


def main():
    global TOKENS
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    if "sanitize=address" in subprocess.run([STRATA, "--version"], capture_output=True, text=True).stdout and TOKENS > 4000:
        print(f"note: {TOKENS} tokens lowered to 4000 under AddressSanitizer (about 10x slower); the other builds run all")
        TOKENS = 4000
    tmp = tempfile.mkdtemp(prefix="strata-soak-")
    failures = []

    def check(cond, what):
        print(("PASS " if cond else "FAIL ") + what, flush=True)
        if not cond:
            failures.append(what)

    t0 = time.time()
    rc, text1, notices, generated, turns, rss = run(os.path.join(tmp, "a.json"))
    print(f"run 1: {turns} turns, {generated} tokens generated in {time.time() - t0:.1f} s")
    check(rc == 0, f"the chat ends with /exit and exit 0 (got {rc})")
    check(generated >= TOKENS and turns >= TURNS_MIN, f"{generated} tokens over {turns} turns")
    check(notices >= 1, f"the conversation outgrew the context and went on ({notices} notices of dropped turns)")
    saved = json.load(open(os.path.join(tmp, "a.json")))
    msgs = saved["messages"]
    check(msgs[0] == {"role": "system", "content": SYSTEM}, "the system prompt is kept, first")
    check(msgs[-1]["role"] == "assistant" and len(msgs) < 2 * turns + 1, "the oldest turns were dropped, the last kept")
    version = subprocess.run([STRATA, "--version"], capture_output=True, text=True).stdout
    if "sanitize=address" in version:
        print(f"SKIP resident memory {rss.get('warm')} -> {rss.get('end')} KiB not judged under AddressSanitizer")
    else:
        check(rss["end"] - rss["warm"] < 1024, f"resident memory flat after warm-up: {rss['warm']} -> {rss['end']} KiB")
    rc2, text2, _, _, _, _ = run(os.path.join(tmp, "b.json"))
    check(rc2 == 0 and text1 == text2, "the same seed gives the same replies on a second run")
    print(f"{'FAILED' if failures else 'ok'}: {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
