#!/usr/bin/env python3
"""Stop strings of `strata generate` (--stop TEXT, repeatable, and the config's
generation.stop) on the bundled model, against HF tokenizers:

    python3 tests/bundled/check_stop.py STRATA

The greedy continuation of a prompt is generated once without a stop (ids with
--tokens) and decoded token by token with HF tokenizers (models/tiny-kjv/
tokenizer.json): C_k = decode(ids[:k]). Stop strings are cut from that text so
that they start in one token and end in a later one (two and three tokens, and
a long one over many), plus one inside a single token, one that never occurs
and one that occurs only in the prompt. For a set of stops, generation must end
with the first token e whose C_{e+1} contains one of them, and the output holds
the text up to where the earliest stop string begins, never the stop string
itself (as the OpenAI API: "the returned text will not contain the stop
sequence"), so the expected stdout is prompt + C_{e+1}[:i] + '\\n' with i the
earliest occurrence; without a hit it is the whole continuation. Each case runs
with --stop on the command line and with generation.stop in a deployment file.
"""
import os
import subprocess
import sys
import tempfile

MODEL = "models/tiny-kjv"
PROMPT = "In the beginning"
N = 48


def run(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
    return r.stdout


def main():
    strata = sys.argv[1]
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    prompt_ids = tok.encode(PROMPT).ids
    gen = [int(t) for t in run([strata, "generate", "-m", MODEL, "--cpu", "--tokens", ",".join(map(str, prompt_ids)),
                                "-n", str(N)]).strip().split(",")]
    C = [tok.decode(gen[:k]) for k in range(len(gen) + 1)]          # C[k]: text of the first k ids
    piece = [C[k + 1][len(C[k]):] for k in range(len(gen))]       # what token k adds
    if any(not C[k + 1].startswith(C[k]) for k in range(len(gen))):
        raise SystemExit("the continuation does not decode token by token (not ASCII?): pick another prompt")
    full = run([strata, "generate", "-m", MODEL, "--cpu", "--greedy", "-n", str(N), "-p", PROMPT])
    fails = []
    if full != PROMPT + C[-1] + "\n":
        fails.append(f"premise: no-stop output {full!r} != prompt + HF decode of the --tokens ids {PROMPT + C[-1]!r}")

    def span(first, n_tok, head=2, tail=2):
        """the last `head` chars of token first, the whole of the tokens between, the first `tail` chars of
        token first + n_tok - 1: a stop string over n_tok tokens"""
        last = first + n_tok - 1
        s = piece[first][-head:] + "".join(piece[first + 1:last]) + piece[last][:tail]
        return s

    def first_hit(stops):
        for e in range(len(gen)):
            if any(s in C[e + 1] for s in stops):
                return e
        return None

    # pick spans at tokens whose pieces are long enough, each occurring first where it was cut
    cases = []
    for n_tok, start, head, tail in ((2, 5, 2, 2), (3, 12, 1, 1), (9, 20, 3, 3)):
        for k in range(start, len(gen) - n_tok):
            if len(piece[k]) < head + 1 or len(piece[k + n_tok - 1]) < tail + 1:
                continue
            s = span(k, n_tok, head, tail)
            if first_hit([s]) == k + n_tok - 1 and not any(s in p for p in piece) and s not in PROMPT:
                cases.append((f"--stop over {n_tok} tokens ({s!r}, ends in token {k + n_tok - 1})", [s]))
                break
        else:
            fails.append(f"premise: no stop string over {n_tok} tokens found in {C[-1]!r}")
    inside = next((p.strip() for p in piece[8:] if len(p.strip()) >= 4 and first_hit([p.strip()]) is not None), None)
    cases.append((f"--stop inside one token ({inside!r})", [inside]))
    cases.append(("--stop that never occurs", ["Zebedee's xylophone"]))
    assert "beginning" not in C[-1], "the continuation repeats the prompt word; pick another"
    cases.append(("--stop only in the prompt ('beginning')", ["beginning"]))
    two = [cases[1][1][0], cases[0][1][0]]          # the later-ending one first: the earlier hit must win
    cases.append((f"two --stop, the earlier hit wins ({two!r})", two))

    with tempfile.TemporaryDirectory() as tmp:
        for name, stops in cases:
            e = first_hit(stops)
            if e is not None:
                cut = min(C[e + 1].index(st) for st in stops if st in C[e + 1])
                want = PROMPT + C[e + 1][:cut] + "\n"
            else:
                want = PROMPT + C[-1] + "\n"
            where = f"after token {e}" if e is not None else "at -n"
            cli = [strata, "generate", "-m", MODEL, "--cpu", "--greedy", "-n", str(N), "-p", PROMPT]
            for s in stops:
                cli += ["--stop", s]
            got = run(cli)
            ok = got == want
            print(f"{'ok  ' if ok else 'FAIL'} {name}: stops {where}" + ("" if ok else f"\n     got  {got!r}\n     want {want!r}"))
            if not ok:
                fails.append(name)
            cfg = os.path.join(tmp, "stop.yaml")
            with open(cfg, "w") as f:
                f.write(f"version: 1\nmodel: {{path: {os.path.abspath(MODEL)}}}\ndevices: [cpu]\n"
                        f"generation:\n  temperature: 0\n  max_tokens: {N}\n  stop:\n")
                for s in stops:
                    f.write("    - \"" + s.replace("\\", "\\\\").replace('"', '\\"') + "\"\n")
            got = run([strata, "generate", "-c", cfg, "-p", PROMPT])
            ok = got == want
            print(f"{'ok  ' if ok else 'FAIL'} generation.stop: {name}" + ("" if ok else f"\n     got  {got!r}\n     want {want!r}"))
            if not ok:
                fails.append("generation.stop: " + name)
    n = 2 * len(cases)
    print(f"{n - len(fails)} passed, {len(fails)} failed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
