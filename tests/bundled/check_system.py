#!/usr/bin/env python3
"""--system on the command line of `strata generate --chat`, on the bundled
model through the ChatML template (tests/bundled/chat-chatml.yaml, whose
generation.system is "You are the KJV."):

    python3 tests/bundled/check_system.py STRATA

Each chat reply must equal a one-shot greedy run (--tokens, the same max_tokens)
on the conversation rendered here by hand in ChatML,
  <|im_start|>system\\nSYSTEM<|im_end|>\\n<|im_start|>user\\nTURN<|im_end|>\\n<|im_start|>assistant\\n
tokenized with HF tokenizers, its ids cut at the first end-of-turn id and
decoded with HF tokenizers, where SYSTEM is --system's text when given and the
config's otherwise. The replies under the two system prompts differ, so a
--system that were ignored could not pass.
"""
import os
import subprocess
import sys

MODEL = "models/tiny-kjv"
CONFIG = "tests/bundled/chat-chatml.yaml"
CONFIG_SYSTEM = "You are the KJV."
TURN = "In the beginning"
MAX_TOKENS = 12          # chat-chatml.yaml generation.max_tokens


def run(cmd, stdin=None):
    r = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
    return r.stdout


def main():
    strata = sys.argv[1]
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    end_ids = {tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")}

    def oneshot(system):
        text = (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{TURN}<|im_end|>\n"
                f"<|im_start|>assistant\n")
        ids = tok.encode(text).ids
        gen = [int(t) for t in run([strata, "generate", "-m", MODEL, "--cpu", "--tokens", ",".join(map(str, ids)),
                                    "-n", str(MAX_TOKENS)]).strip().split(",")]
        cut = next((i for i, t in enumerate(gen) if t in end_ids), len(gen))
        return tok.decode(gen[:cut], skip_special_tokens=True)

    def chat(*extra):
        out = run([strata, "generate", "-c", CONFIG, "--chat", *extra], stdin=TURN + "\n")
        return out[:-1] if out.endswith("\n") else out

    fails = []
    own = "Moses spake unto the children of Israel."
    cases = [("--system TEXT replaces the config's system prompt", chat("--system", own), oneshot(own)),
             ("without --system the config's system prompt is used", chat(), oneshot(CONFIG_SYSTEM))]
    for name, got, want in cases:
        ok = got == want
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {got!r}" + ("" if ok else f"\n     want {want!r}"))
        if not ok:
            fails.append(name)
    if cases[0][2] == cases[1][2]:
        fails.append("premise")
        print("FAIL premise: the replies under both system prompts are the same, so --system is not tested")
    print(f"{len(cases) - len(fails)} passed, {len(fails)} failed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
