#!/usr/bin/env python3
"""Writes the inputs and expected outputs of the `strata tokenize` / `strata
detokenize` CLI tests (tests/tokenizer/cli/, run by tests/tokenizer/tests.cmake)
with HF tokenizers on the Qwen3 tokenizer.json (tests/fixtures/tokenizers/qwen3):

    python3 tests/tokenizer/gen_cli.py            # (re)write tests/tokenizer/cli/*
    python3 tests/tokenizer/gen_cli.py --check    # recompute, compare with the committed files, exit 1 on a difference

  input.txt           the text below: ASCII, CJK, a special token, tabs and runs of
                      spaces, two bytes that are not UTF-8, CRLF, an empty line, emoji
                      with ZWJ sequences; ends with '\\n'
  ids.txt             encode(input) (ill-formed bytes repaired as bytes.decode(errors="replace")),
                      ids separated by spaces, then '\\n'     <- tokenize
  lines.json          each line of input ('\\n' split, not part of the line, a '\\r' kept)
                      encoded on its own, one JSON array per line  <- tokenize --lines --json
  special.txt         "<|im_start|>user", no newline
  nospecial.txt       encode(special) with special tokens matched as plain text
                      (HF encode_special_tokens=True)          <- tokenize --no-special
  input_repaired.txt  decode(ids.txt's ids), no newline added   <- detokenize (stdin)
  lines_decoded.txt   decode(ids) + '\\n' per lines.json line    <- detokenize (JSON lines)
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "tokenizers", "qwen3", "tokenizer.json")
OUT = os.path.join(HERE, "cli")

INPUT = (b"Hello world! \xe4\xbd\xa0\xe5\xa5\xbd\n"
         b"<|im_start|>user\n"
         b"tabs\tand  spaces  \n"
         b"bad \xff\xc3 bytes\n"
         b"CRLF line\r\n"
         b"\n"
         b"\xf0\x9f\x98\x80 emoji ZWJ \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7\n")
SPECIAL = b"<|im_start|>user"


def text(b):
    return b.decode("utf-8", errors="replace")


def expected(tok):
    ids = tok.encode(text(INPUT)).ids
    lines = INPUT.split(b"\n")
    if INPUT.endswith(b"\n"):
        lines = lines[:-1]
    per_line = [tok.encode(text(ln)).ids for ln in lines]
    tok.encode_special_tokens = True
    nospecial = tok.encode(text(SPECIAL)).ids
    tok.encode_special_tokens = False
    return {
        "input.txt": INPUT,
        "special.txt": SPECIAL,
        "ids.txt": (" ".join(map(str, ids)) + "\n").encode(),
        "lines.json": "".join(json.dumps(x) + "\n" for x in per_line).encode(),
        "nospecial.txt": (" ".join(map(str, nospecial)) + "\n").encode(),
        "input_repaired.txt": tok.decode(ids, skip_special_tokens=False).encode(),
        "lines_decoded.txt": "".join(tok.decode(x, skip_special_tokens=False) + "\n" for x in per_line).encode(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing them")
    args = ap.parse_args()
    from tokenizers import Tokenizer
    import tokenizers
    files = expected(Tokenizer.from_file(TOKENIZER))
    bad = 0
    for name, data in files.items():
        path = os.path.join(OUT, name)
        if not args.check:
            with open(path, "wb") as f:
                f.write(data)
            continue
        try:
            have = open(path, "rb").read()
        except OSError as e:
            print(f"{path}: {e}")
            bad += 1
            continue
        if have != data:
            bad += 1
            print(f"{path}: differs from HF tokenizers {tokenizers.__version__}:\n  committed {have[:300]!r}\n"
                  f"  HF        {data[:300]!r}\nhint: rerun 'python3 tests/tokenizer/gen_cli.py' if the change is right")
        else:
            print(f"ok   {name} ({len(data)} bytes)")
    if args.check:
        print(f"{len(files) - bad} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
