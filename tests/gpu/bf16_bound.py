#!/usr/bin/env python3
"""How far can a bf16 stage's logits be from the fp32 CPU engine's on the
e2e models? The tolerance that tests/gpu/check_e2e.py applies to bf16 runs
comes from this script (numbers in tests/gpu/README.md).

A numpy forward pass in float64 (the model of tools/fixtures/check_fixtures.py)
is run twice over prompt + greedy tokens (teacher forcing, so every row is the
same context as the engine's prefill and decode rows): once exact, once with
every matmul input rounded to bf16 (round to nearest even), which is the
worst case of strata's bf16 precision: weights, activations into every GEMM,
q/k/v as the bf16 KV cache stores them, and the softmax probabilities before
P·V as the flash kernel feeds them to the tensor cores. (The real decode GEMV
keeps fp32 activations, so its rows are closer than this.) Accumulation stays
exact, as the GPU's fp32 accumulation is to within far less than bf16 rounding.

Per row: rel = max|bf16 - exact| / max|exact|; and the greedy decision's
relative top-2 gap, (top1 - top2) / max|exact|, to see whether a flip is
possible. Prints one line per model, and --json FILE writes the numbers.

    python3 tests/gpu/bf16_bound.py [--json out.json]
"""
import argparse
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "fixtures"))
import check_fixtures as cf  # noqa: E402  (rmsnorm, apply_rope, load_hf, load_gguf)


def bf16(x):
    """Round to bf16 (nearest even) and back, elementwise; float64 in, float64 out."""
    a = np.asarray(x, dtype=np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def forward(W, hp, tokens, r):
    """check_fixtures.forward with r() applied to every matmul input."""
    E, H, Hkv, D, L, eps = hp["E"], hp["H"], hp["Hkv"], hp["D"], hp["L"], hp["eps"]
    inv = hp["inv_freq"]
    T = len(tokens)
    x = W["embd"][tokens].astype(np.float64)
    for l in range(L):
        p = lambda n: W.get(f"{l}.{n}")  # noqa: E731
        h = r(cf.rmsnorm(x, p("attn_norm"), eps))
        q = h @ r(p("wq")).T + (p("bq") if p("bq") is not None else 0)
        k = h @ r(p("wk")).T + (p("bk") if p("bk") is not None else 0)
        v = h @ r(p("wv")).T + (p("bv") if p("bv") is not None else 0)
        q = q.reshape(T, H, D)
        k = k.reshape(T, Hkv, D)
        v = v.reshape(T, Hkv, D)
        if p("q_norm") is not None:
            q = cf.rmsnorm(q, p("q_norm"), eps)
            k = cf.rmsnorm(k, p("k_norm"), eps)
        for t in range(T):
            q[t] = cf.apply_rope(q[t], t, inv, hp["neox"])
            k[t] = cf.apply_rope(k[t], t, inv, hp["neox"])
        q, k, v = r(q), r(k), r(v)
        out = np.zeros((T, H, D))
        g = H // Hkv
        for hh in range(H):
            kv = hh // g
            s = q[:, hh] @ k[:, kv].T / math.sqrt(D)
            s = s + np.triu(np.full((T, T), -np.inf), 1)
            s = np.exp(s - s.max(axis=1, keepdims=True))
            den = s.sum(axis=1, keepdims=True)
            out[:, hh] = (r(s) @ v[:, kv]) / den
        x = x + r(out.reshape(T, H * D)) @ r(p("wo")).T
        h2 = r(cf.rmsnorm(x, p("ffn_norm"), eps))
        gt = h2 @ r(p("gate")).T
        m = r((gt / (1 + np.exp(-gt))) * (h2 @ r(p("up")).T))
        x = x + m @ r(p("down")).T
    x = r(cf.rmsnorm(x, W["norm"], eps))
    return x @ r(W["out"]).T


def ident(x):
    return x


def models():
    fx = os.path.join(ROOT, "tests", "fixtures", "models")
    for name in ("qwen2-tiny", "qwen3-tiny", "llama-tiny"):
        ref = json.load(open(os.path.join(fx, name, "reference.json")))
        yield name, cf.load_gguf(os.path.join(fx, name, f"{name}-f32.gguf")), ref["tokens"], ref["greedy_tokens"]
    t4 = os.path.join(ROOT, "tests", "gpu", "models", "tiny-4l")
    if os.path.isdir(t4):
        ref = json.load(open(os.path.join(t4, "reference.json")))
        yield "tiny-4l", cf.load_hf(t4), ref["tokens"], ref["greedy_tokens"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args()
    out = {}
    for name, (W, hp), prompt, greedy in models():
        seq = list(prompt) + list(greedy[:-1])
        ex = forward(W, hp, seq, ident)
        lo = forward(W, hp, seq, bf16)
        n_p = len(prompt)
        rel = np.abs(lo - ex).max(1) / np.abs(ex).max(1)
        srt = np.sort(ex[n_p - 1:], 1)
        gap = (srt[:, -1] - srt[:, -2]) / np.abs(ex[n_p - 1:]).max(1)
        flips = int((lo[n_p - 1:].argmax(1) != ex[n_p - 1:].argmax(1)).sum())
        out[name] = {"rel_max_prefill": float(rel[:n_p].max()), "rel_max_decode": float(rel[n_p:].max()),
                     "rel_median": float(np.median(rel)), "min_rel_top2_gap": float(gap.min()),
                     "argmax_flips": flips, "rows": len(seq)}
        print(f"{name:11s} bf16-everywhere vs exact: rel max {rel.max():.2e} (prompt rows {rel[:n_p].max():.2e}, "
              f"later rows {rel[n_p:].max():.2e}, median {np.median(rel):.2e}); smallest greedy top-2 gap "
              f"{gap.min():.2e} of max|logit|; argmax flips {flips}/{len(gap)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
