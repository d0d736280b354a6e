#!/usr/bin/env python3
"""How far can a GPU stage's logits be from the fp32 CPU engine's on the
quantized fixtures (tests/fixtures/models/qwen2-quant)? The per-type
tolerances of tests/gpu/e2e_quant.sh come from this script
(tests/gpu/quant_tolerances.json; CI checks that file against a fresh run).

Both engines multiply the same dequantized weights (kernels/cuda/quant.cuh is
bit-identical to model/dtype.c), so what differs is the rounding of the GPU
paths, modelled here in float64 (tests/gpu/bf16_bound.py's forward pass and
teacher forcing over prompt + the CPU's greedy tokens):
  prompt rows  (prefill GEMM, cuBLAS bf16 over a dequantized tile): every
               matmul input rounded to bf16, weights and activations;
  later rows   (decode GEMV with dp4a): the activations entering every matmul
               quantized to 8 bits per 32 elements (st_q8x: d = max|x| / 127,
               q = rint(x / d)), the weights exact;
  all rows     q, k, v rounded to bf16 (the bf16 KV cache, flash attention's
               inputs) and the softmax probabilities before P.V.
The Maxwell path and CPU stages compute in fp32 with an f32 KV cache: the
fp32 class (1e-4) of tests/gpu/README.md applies there, unchanged.

Per file: rel = max |gpu - exact| / max |exact| per row, its maximum over the
prompt rows and the later rows, and the smallest greedy top-2 gap. The
tolerance is twice the largest rel, rounded up to two digits.

    python3 tests/gpu/quant_bound.py [--json tests/gpu/quant_tolerances.json] [--check FILE]
--check: recompute and compare with FILE (tolerances equal, 1% slack for numpy
versions); exit 1 when they differ.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tools", "fixtures"))
import check_fixtures as cf  # noqa: E402
import quantize_ref  # noqa: E402
from bf16_bound import bf16  # noqa: E402

FX = os.path.join(ROOT, "tests", "fixtures", "models", "qwen2-quant")


def q8(x):
    """x quantized to 8 bits per 32 elements along the last axis, and back"""
    a = np.asarray(x, dtype=np.float32).astype(np.float64)
    s = a.reshape(*a.shape[:-1], -1, 32)
    amax = np.abs(s).max(axis=-1, keepdims=True)
    d = amax / 127.0
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(d > 0, np.clip(np.rint(s / d), -127, 127), 0.0)
    return (q * d).reshape(a.shape)


def forward(W, hp, tokens, n_p, gpu):
    """check_fixtures.forward; with gpu: the rounding of the GPU paths above"""
    E, H, Hkv, D, L, eps = hp["E"], hp["H"], hp["Hkv"], hp["D"], hp["L"], hp["eps"]
    inv = hp["inv_freq"]
    T = len(tokens)
    r = bf16 if gpu else (lambda v: v)

    def mm(x, w):
        if not gpu:
            return x @ w.T
        return np.concatenate([bf16(x[:n_p]) @ bf16(w).T, q8(x[n_p:]) @ w.T], axis=0)

    x = W["embd"][tokens].astype(np.float64)
    for l in range(L):
        p = lambda n: W.get(f"{l}.{n}")  # noqa: E731
        h = cf.rmsnorm(x, p("attn_norm"), eps)
        q = mm(h, p("wq")) + (p("bq") if p("bq") is not None else 0)
        k = mm(h, p("wk")) + (p("bk") if p("bk") is not None else 0)
        v = mm(h, p("wv")) + (p("bv") if p("bv") is not None else 0)
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
        x = x + mm(out.reshape(T, H * D), p("wo"))
        h2 = cf.rmsnorm(x, p("ffn_norm"), eps)
        gt = mm(h2, p("gate"))
        m = (gt / (1 + np.exp(-gt))) * mm(h2, p("up"))
        x = x + mm(m, p("down"))
    x = cf.rmsnorm(x, W["norm"], eps)
    return mm(x, W["out"])


def up2(v):
    """round up to two significant digits"""
    e = math.floor(math.log10(v)) - 1
    return math.ceil(v / 10 ** e - 1e-9) * 10 ** e


def measure():
    ref = json.load(open(os.path.join(FX, "reference.json")))
    prompt = ref["tokens"]
    out = {}
    for t, info in ref["files"].items():
        W, hp, _ = quantize_ref.load(os.path.join(FX, info["file"]))
        seq = list(prompt) + list(info["greedy_tokens"][:-1])
        n_p = len(prompt)
        ex = forward(W, hp, seq, n_p, False)
        lo = forward(W, hp, seq, n_p, True)
        rel = np.abs(lo - ex).max(1) / np.abs(ex).max(1)
        srt = np.sort(ex[n_p - 1:], 1)
        gap = (srt[:, -1] - srt[:, -2]) / np.abs(ex[n_p - 1:]).max(1)
        flips = int((lo[n_p - 1:].argmax(1) != ex[n_p - 1:].argmax(1)).sum())
        worst = float(rel.max())
        out[t] = {"rel_max_prompt": float(rel[:n_p].max()), "rel_max_decode": float(rel[n_p:].max()),
                  "min_rel_top2_gap": float(gap.min()), "argmax_flips": flips, "tol": up2(2 * worst)}
        print(f"{t:7s} gpu rounding vs exact: rel max prompt rows {rel[:n_p].max():.2e}, later rows "
              f"{rel[n_p:].max():.2e}; smallest top-2 gap {gap.min():.2e}; flips {flips}/{len(gap)} -> tol "
              f"{out[t]['tol']:.2g}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--check", help="compare with this file")
    args = ap.parse_args()
    out = measure()
    doc = {"generator": "tests/gpu/quant_bound.py", "class": "bf16 stages (prefill bf16 GEMM, dp4a decode GEMV)",
           "fp32_class_tol": 1e-4, "files": out}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    if args.check:
        old = json.load(open(args.check))["files"]
        bad = [t for t in out if t not in old or abs(old[t]["tol"] - out[t]["tol"]) > 0.01 * out[t]["tol"]]
        bad += [t for t in old if t not in out]
        if bad:
            print(f"{args.check}: tolerances differ for {', '.join(bad)}: rerun with --json {args.check}")
            sys.exit(1)
        print(f"{args.check}: the committed tolerances match")


if __name__ == "__main__":
    main()
