#!/usr/bin/env python3
"""numpy reference for quantized GGUF files: every tensor dequantized by
gguf-py (gguf.quants.dequantize, independent of strata's model/dtype.c), then
the float64 forward pass of tools/fixtures/check_fixtures.py.

    python3 tools/quantize_ref.py FILE.gguf --tokens 1,2,3 [-n 16]

prints the greedy ids (a full forward per step: tiny models only). Used by
tools/fixtures/make_quant_fixtures.py (reference.json) and
tests/engine/quant_fixtures.py (CI)."""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures"))
from check_fixtures import GG, forward  # noqa: E402


def load(path):
    """(W, hp) as check_fixtures.load_gguf gives them, with quantized tensors
    dequantized by gguf-py; also {tensor name: ggml type name}."""
    from gguf import GGUFReader
    from gguf import quants
    r = GGUFReader(path)
    f = dict(r.fields)

    def val(k):
        fl = f[k]
        return fl.parts[fl.data[0]].tolist()[0] if fl.types[0] != 8 else bytes(fl.parts[fl.data[0]]).decode()
    arch = val("general.architecture")
    E, H = val(f"{arch}.embedding_length"), val(f"{arch}.attention.head_count")
    hp = dict(E=E, H=H, Hkv=val(f"{arch}.attention.head_count_kv"), L=val(f"{arch}.block_count"),
              eps=val(f"{arch}.attention.layer_norm_rms_epsilon"), neox=arch != "llama")
    hp["D"] = val(f"{arch}.attention.key_length") if f"{arch}.attention.key_length" in f else E // H
    theta = val(f"{arch}.rope.freq_base")
    W, types = {}, {}
    for t in r.tensors:
        shape = [int(d) for d in reversed(t.shape)]
        a = quants.dequantize(t.data, t.tensor_type).astype(np.float64).reshape(shape)
        types[t.name] = t.tensor_type.name.lower()
        n = t.name
        if n == "token_embd.weight": W["embd"] = a
        elif n == "output_norm.weight": W["norm"] = a
        elif n == "output.weight": W["out"] = a
        elif n == "rope_freqs.weight": W["rope_freqs"] = a
        else:
            _, l, rest = n.split(".", 2)
            W[f"{l}.{GG[rest]}"] = a
    W.setdefault("out", W["embd"])
    inv = 1.0 / (theta ** (np.arange(0, hp["D"], 2, dtype=np.float64) / hp["D"]))
    if "rope_freqs" in W:
        inv = inv / W["rope_freqs"]
    hp["inv_freq"] = inv
    return W, hp, types


def greedy(W, hp, tokens, n):
    """(ids of n greedy steps, logits (len(tokens) + n - 1, vocab): the prompt
    rows of one pass, then the row that chose each later id)"""
    seq = list(tokens)
    logits = forward(W, hp, seq)
    rows = [logits[i] for i in range(len(seq))]
    ids = []
    for step in range(n):
        nxt = int(np.argmax(rows[-1]))
        ids.append(nxt)
        if step == n - 1:
            break
        seq.append(nxt)
        rows.append(forward(W, hp, seq)[-1])
    return ids, np.array(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("-n", type=int, default=16)
    args = ap.parse_args()
    W, hp, _ = load(args.file)
    ids, _ = greedy(W, hp, [int(t) for t in args.tokens.split(",")], args.n)
    print(",".join(map(str, ids)))


if __name__ == "__main__":
    main()
