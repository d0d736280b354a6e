#!/usr/bin/env python3
"""Peer check of `strata calibrate`: an independent numpy forward pass
(float64, tools/fixtures/check_fixtures.py's weights and RoPE) computes, for
each layer of a fixture model, the largest |x| entering its matmuls and the
relative error of the layer's update when that layer alone has its matmul
inputs and K/V rounded to fp16 (numpy float16, round to nearest even), as
docs/numerics.md defines them; strata's profile must agree.

    check_calibrate.py STRATA MODEL_HF_DIR WORKDIR
"""
import math
import os
import random
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools", "fixtures"))
from check_fixtures import apply_rope, load_hf, rmsnorm  # noqa: E402


def f16(x):
    return x.astype(np.float32).astype(np.float16).astype(np.float64)


def layer(W, hp, l, x, rnd):
    """One block on residual x (T, E); rnd rounds matmul inputs and K/V. Returns
    (output, {input name: max |x|})."""
    E, H, Hkv, D, eps = hp["E"], hp["H"], hp["Hkv"], hp["D"], hp["eps"]
    T = x.shape[0]
    p = lambda n: W.get(f"{l}.{n}")
    r = (lambda a: f16(a)) if rnd else (lambda a: a)
    mx = {}
    h = rmsnorm(x, p("attn_norm"), eps)
    mx["qkv"] = np.abs(h).max()
    h = r(h)
    q = (h @ p("wq").T + (p("bq") if p("bq") is not None else 0)).reshape(T, H, D)
    k = (h @ p("wk").T + (p("bk") if p("bk") is not None else 0)).reshape(T, Hkv, D)
    v = (h @ p("wv").T + (p("bv") if p("bv") is not None else 0)).reshape(T, Hkv, D)
    if p("q_norm") is not None:
        q = rmsnorm(q, p("q_norm"), eps)
        k = rmsnorm(k, p("k_norm"), eps)
    for t in range(T):
        q[t] = apply_rope(q[t], t, hp["inv_freq"], hp["neox"])
        k[t] = apply_rope(k[t], t, hp["inv_freq"], hp["neox"])
    k, v = r(k), r(v)
    out = np.zeros((T, H, D))
    g = H // Hkv
    for hh in range(H):
        s = q[:, hh] @ k[:, hh // g].T / math.sqrt(D)
        s = s + np.triu(np.full((T, T), -np.inf), 1)
        s = np.exp(s - s.max(axis=1, keepdims=True))
        s /= s.sum(axis=1, keepdims=True)
        out[:, hh] = s @ v[:, hh // g]
    a = out.reshape(T, H * D)
    mx["o"] = np.abs(a).max()
    x = x + r(a) @ p("wo").T
    h2 = rmsnorm(x, p("ffn_norm"), eps)
    mx["gate_up"] = np.abs(h2).max()
    h2 = r(h2)
    gt = h2 @ p("gate").T
    m = (gt / (1 + np.exp(-gt))) * (h2 @ p("up").T)
    mx["down"] = np.abs(m).max()
    return x + r(m) @ p("down").T, mx


def main():
    strata, model, work = sys.argv[1:4]
    W, hp = load_hf(model)
    rng = random.Random(5)
    n_vocab = W["embd"].shape[0]
    ids = [rng.randrange(n_vocab) for _ in range(40)]
    ids_path = os.path.join(work, "calib-ids.txt")
    prof_path = os.path.join(work, "calib-profile.yaml")
    with open(ids_path, "w") as f:
        f.write(", ".join(map(str, ids[:20])) + "\n" + " ".join(map(str, ids[20:])) + "\n")
    subprocess.run([strata, "calibrate", "-m", model, "--ids", ids_path, "-o", prof_path, "--threads", "1"],
                   check=True)
    got = []
    for line in open(prof_path):
        mt = re.match(r"\s*- \{layer: (\d+), fp16_safe: (\w+), max_abs: ([^,]+), frac_above_fp16: ([^,]+), "
                      r"rel_error: ([^,]+), worst: \"(\w+)\"\}", line)
        if mt:
            got.append((int(mt[1]), mt[2] == "true", float(mt[3]), float(mt[4]), float(mt[5]), mt[6]))
    ok = len(got) == hp["L"]
    x = W["embd"][ids].astype(np.float64)
    for l in range(hp["L"]):
        y, mx = layer(W, hp, l, x, False)
        y16, _ = layer(W, hp, l, x, True)
        err = np.linalg.norm(y16 - y) / np.linalg.norm(y - x)
        worst = max(mx, key=mx.get)
        want_max = mx[worst]
        _, safe, g_max, g_frac, g_err, g_worst = got[l]
        good = (abs(g_max - want_max) <= 1e-4 * want_max and g_worst == worst and g_frac == 0.0
                and abs(g_err - err) <= 0.05 * err and safe == (err <= 1e-3 and want_max <= 65504 / 8))
        ok &= good
        print(f"layer {l}: max |x| strata {g_max:.6g} numpy {want_max:.6g} ({g_worst}/{worst}); "
              f"rel error strata {g_err:.4e} numpy {err:.4e} {'ok' if good else 'FAIL'}")
        x = y
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
