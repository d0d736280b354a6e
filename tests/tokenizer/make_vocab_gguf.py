#!/usr/bin/env python3
"""Writes the GGUF vocabulary fixtures for the tokenizer tests (at test time, into OUTDIR):

  qwen3-vocab.gguf     the Qwen3 vocabulary (tokens, token_type, merges, pre="qwen2", special ids)
                       converted from tests/fixtures/tokenizers/qwen3/tokenizer.json the way
                       llama.cpp's convert_hf_to_gguf.py (get_vocab_base) does: padded to 151936
                       with "[PAD{id}]" (UNUSED); added tokens that are special or look special
                       (<|...|>) CONTROL, the others USER_DEFINED; merges as "a b" strings.
  spm-tiny.gguf        a hand-made SentencePiece ("llama") vocabulary: <unk>, <s>, </s>, 256
                       <0xXX> byte tokens, pieces with scores (ties included), a user-defined token.
  spm-tiny-expected.txt  for random strings: "hex(text)<TAB>ids" computed by brute force
                       (repeatedly merge the adjacent pair whose concatenation is a piece with
                       the highest score, leftmost on ties; leftovers become byte tokens), with
                       BOS prepended and a space prefix, as llama.cpp does for SPM.

Needs the `gguf` package (pip install gguf).
"""
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
QWEN3 = os.path.join(ROOT, "tests", "fixtures", "tokenizers", "qwen3", "tokenizer.json")

SPM_PIECES = [  # (piece, score); "▁" is U+2581
    ("▁", -50.0), ("a", -60.0), ("b", -60.0), ("c", -60.0), ("d", -60.0), ("e", -60.0), ("h", -60.0),
    ("l", -60.0), ("o", -60.0), ("r", -60.0), ("w", -60.0), ("日", -60.0), ("本", -60.0), ("é", -60.0),
    ("▁a", -1.0), ("▁b", -2.0), ("ab", -3.0), ("bc", -3.0), ("abc", -4.0), ("▁ab", -5.0),
    ("he", -6.0), ("ll", -6.0), ("llo", -7.0), ("hell", -8.0), ("hello", -9.0), ("▁hello", -10.0),
    ("▁w", -11.0), ("or", -12.0), ("wor", -13.0), ("world", -14.0), ("▁world", -15.0),
    ("日本", -16.0), ("▁日本", -17.0), ("aa", -3.0), ("▁▁", -20.0), ("cd", -2.5), ("bcd", -2.6),
]
SPM_USER = "<sep>"


def spm_vocab():
    toks, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    for b in range(256):
        toks.append("<0x%02X>" % b)
        scores.append(0.0)
        types.append(6)
    for p, s in SPM_PIECES:
        toks.append(p)
        scores.append(s)
        types.append(1)
    toks.append(SPM_USER)
    scores.append(0.0)
    types.append(4)
    return toks, scores, types


def spm_brute(text, toks, scores):
    """reference SentencePiece BPE: naive scan per merge"""
    index = {t: i for i, t in enumerate(toks)}
    s = "▁" + text.replace(" ", "▁")
    syms = list(s)
    while True:
        best = None
        for i in range(len(syms) - 1):
            cat = syms[i] + syms[i + 1]
            if cat in index:
                sc = scores[index[cat]]
                if best is None or sc > best[0]:
                    best = (sc, i)
        if best is None:
            break
        i = best[1]
        syms[i:i + 2] = [syms[i] + syms[i + 1]]
    ids = [1]  # BOS
    for x in syms:
        if x in index:
            ids.append(index[x])
        else:
            for b in x.encode("utf-8"):
                ids.append(index["<0x%02X>" % b])
    return ids


def write_spm(gguf, out):
    toks, scores, types = spm_vocab()
    w = gguf.GGUFWriter(os.path.join(out, "spm-tiny.gguf"), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    r = random.Random(11)
    alphabet = ["a", "b", "c", "d", "e", "h", "l", "o", "r", "w", " ", "  ", "日", "本", "é", "x", "ñ", "😀", "abc", "hello", "world"]
    with open(os.path.join(out, "spm-tiny-expected.txt"), "w") as f:
        for _ in range(400):
            t = "".join(r.choice(alphabet) for _ in range(r.randint(1, 12)))
            f.write("%s\t%s\n" % (t.encode().hex(), " ".join(map(str, spm_brute(t, toks, scores)))))


def write_qwen3(gguf, out):
    tj = json.load(open(QWEN3, encoding="utf-8"))
    vocab = tj["model"]["vocab"]
    added = {a["id"]: a for a in tj["added_tokens"]}
    n = 151936
    rev = {i: t for t, i in vocab.items()}
    for i, a in added.items():
        rev[i] = a["content"]
    tokens, types = [], []
    for i in range(n):
        if i not in rev:
            tokens.append("[PAD%d]" % i)
            types.append(gguf.TokenType.UNUSED)
            continue
        t = rev[i]
        if i in added:
            looks = t.startswith("<|") and t.endswith("|>")
            types.append(gguf.TokenType.CONTROL if added[i]["special"] or looks else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(t)
    merges = [m if isinstance(m, str) else "%s %s" % (m[0], m[1]) for m in tj["model"]["merges"]]
    w = gguf.GGUFWriter(os.path.join(out, "qwen3-vocab.gguf"), "qwen3")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(151643)
    w.add_eos_token_id(151645)
    w.add_pad_token_id(151643)
    w.add_add_bos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    if len(sys.argv) != 2:
        print("usage: make_vocab_gguf.py OUTDIR", file=sys.stderr)
        return 2
    try:
        import gguf
    except ImportError:
        print("error: the gguf package is missing\nhint: pip install gguf (tools/test.sh puts it in .venv)", file=sys.stderr)
        return 1
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    write_spm(gguf, out)
    write_qwen3(gguf, out)
    print("wrote %s/{qwen3-vocab.gguf, spm-tiny.gguf, spm-tiny-expected.txt}" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
