#!/usr/bin/env python3
"""Where tests/gpu/test_kernels.c's tolerances for the tensor-core paths come
from: bf16 5e-3 and f16 2e-3, as rel = ||gpu - cpu||_2 / ||cpu||_2 over an op's
output (test_kernels.c expect_close), derived like tests/gpu/bf16_bound.py
derives the e2e model bound.

A numpy model of each such case of test_kernels.c (float64; the large GEMMs'
products in float32, whose own error, ~1e-6, is far below the roundings), on its
shapes and its input distributions, with the GPU's roundings and nothing else
(fp32 accumulation is exact to far below them):

  matmul GEMM (T > 8 tokens; T <= 8 is the fp32-activation GEMV, 1e-5):
      W in the weight dtype (0.05 U(-1,1), exact on both sides), x = U(-1,1)
      rounded to the weight dtype (gemm.cu st_convert_f32_cuda, nearest even)
      before cuBLAS; bias U(-1,1) where the test adds one; matmul_multi's GEMM
      cases too. matmul_swiglu: silu(gate) * up of two such products (the test
      allows 2 x tol).
  flash attention (head_dim 64/128, every KV dtype): Q (2 U(-1,1)) and, for an
      F32 cache, K and V rounded to bf16 (to f16 with an F16 cache, whose K/V are
      exact), the unnormalised softmax weights P rounded before P V, their sum
      from the unrounded P (attn_flash.cu). A q8_0 cache: the test's random
      int8 blocks (scaled so |values| <= 1.14), widened in fp32 by both sides
      and rounded to bf16 by flash like an f32 cache's.

Each case runs over SEEDS seeds; the worst rel per precision is the rounding
bound. Against it, planted bugs on the same cases: a GEMM output row of one token
taken from the previous token's (a wrong row); attention that misses the key at
the query's own position (an off-by-one causal mask) or reads the previous
position's key and value there (a stale KV entry). A tolerance is sound when it
is at least 2 x the rounding worst case and at most half the smallest planted
bug of the same op, so the check passes every correct run and fails every such
bug. GEMM and flash attention get their own ranges: flash attention over an F32
cache rounds Q, K, V and P (worst ~2.8e-3) where a bf16 GEMM rounds x only
(~1.6e-3), and a missed key among 4,000 moves the output far less (~1.5e-2) than
a wrong GEMM row (~1.5e-1).

    python3 tests/gpu/kernel_bound.py             # the table
    python3 tests/gpu/kernel_bound.py --check     # also test_kernels.c's constants against it (ctest)
"""
import argparse
import math
import os
import re
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # small products: threads only contend on a shared box
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = 2
KV_Q8_SCALE = 0.3   # test_kernels.c kv_make_slots: rand_dtype's scale for a q8_0 cache
# test_kernels.c cases (keep in step with it)
MATMUL = [(256, 512, 37, False), (1000, 3584, 64, False), (1000, 3584, 64, True), (96, 200, 9, False)]
MULTI = [(512, 12, (256, 77)), (1003, 9, (65, 130))]        # cols, tokens, rows per matrix
ATTN = [(300, 2, 8, 128, 1, 299), (300, 2, 8, 128, 5, 150), (2100, 4, 28, 128, 1, 2050), (4096, 2, 14, 64, 1, 4000),
        (97, 1, 4, 64, 40, 96), (1500, 2, 16, 128, 33, 1400), (257, 8, 8, 128, 2, 256)]


def bf16(x):
    a = np.asarray(x, dtype=np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float64)


def f32(x):
    return np.asarray(x, dtype=np.float32).astype(np.float64)


ROUND = {"bf16": bf16, "f16": f16, "f32": f32}


def rel(got, ref):
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def uni(rng, shape, scale=1.0):
    return f32(scale * rng.uniform(-1.0, 1.0, shape))


def gemm(rng, R, C, T, bias, dt):
    q = ROUND[dt]
    w = q(uni(rng, (R, C), 0.05))
    x = uni(rng, (T, C))
    b = uni(rng, R) if bias else 0.0
    w32 = w.astype(np.float32).T            # fp32 products: their error (~1e-6) is far below the roundings'
    exact = (x.astype(np.float32) @ w32).astype(np.float64) + b
    gpu = (q(x).astype(np.float32) @ w32).astype(np.float64) + b
    wrong = exact.copy()
    wrong[-1] = exact[-2]
    return rel(gpu, exact), rel(wrong, exact)


def swiglu(rng, F, C, T, dt):
    q = ROUND[dt]
    wg, wu = q(uni(rng, (F, C), 0.05)), q(uni(rng, (F, C), 0.05))
    x = uni(rng, (T, C))
    silu = lambda g: g / (1.0 + np.exp(-g))  # noqa: E731

    def f(xx):
        return silu(xx @ wg.T) * (xx @ wu.T)
    return rel(f(q(x)), f(x))


def q8_0(rng, shape, scale=KV_Q8_SCALE):
    """test_kernels.c kv_make's q8_0 blocks (rand_dtype): random int8 values, d = f16(scale (0.01 + 0.02
    |U(-1,1)|)) per 32; both backends widen q * d in fp32"""
    n = int(np.prod(shape))
    q = rng.integers(-128, 128, n).astype(np.float64).reshape(-1, 32)
    d = f16(scale * (0.01 + 0.02 * np.abs(rng.uniform(-1.0, 1.0, n // 32))))
    return f32(q * d[:, None]).reshape(shape)


def attention(rng, n_ctx, Hkv, H, D, T, last, kv):
    """rel of the flash model, of a missed own key and of a stale own key (per case, one seed)"""
    qt = f16 if kv == "f16" else bf16
    if kv == "q8_0":    # |values| up to 1.14, like the float caches' U(-1,1) (at scale 1, up to 3.8: a softmax
        #                 so sharp that a missed key moves the output less than the roundings do)
        K, V = q8_0(rng, (n_ctx, Hkv, D)), q8_0(rng, (n_ctx, Hkv, D))
    else:
        K, V = ROUND[kv](uni(rng, (n_ctx, Hkv, D))), ROUND[kv](uni(rng, (n_ctx, Hkv, D)))
    Q = uni(rng, (T, H, D), 2.0)
    pos = np.arange(last - T + 1, last + 1)
    scale = 1.0 / math.sqrt(D)
    n = last + 1
    keys = np.arange(n)
    mask = keys[None, :] <= pos[:, None]                       # causal: key j <= the query's position
    own = keys[None, :] == pos[:, None]

    def run(q, k, v, pr=lambda p: p, m=mask, stale=False):
        out = np.zeros((T, H, D))
        for h in range(H):
            g = h // (H // Hkv)
            kh, vh = k[:n, g].copy(), v[:n, g].copy()
            s = q[:, h] @ kh.T * scale
            if stale:                                           # the own key/value are the previous position's
                s_prev = q[:, h] @ kh[np.maximum(pos - 1, 0)].T * scale
                s[np.arange(T), pos] = s_prev[np.arange(T), np.arange(T)]
            s = np.where(m, s, -np.inf)
            p = np.exp(s - s.max(axis=1, keepdims=True))
            pv = pr(p) @ vh
            if stale:
                pv += (pr(p)[np.arange(T), pos])[:, None] * (vh[np.maximum(pos - 1, 0)] - vh[pos])
            out[:, h] = pv / p.sum(axis=1, keepdims=True)
        return out
    exact = run(Q, K, V)
    flash = run(qt(Q), qt(K), qt(V), pr=qt)
    missed = run(Q, K, V, m=mask & ~own) if last - T + 1 > 0 else exact
    stale = run(Q, K, V, stale=True)
    return rel(flash, exact), rel(missed, exact), rel(stale, exact)


def table():
    """{(op, prec): {'round': worst rounding rel, 'bug': smallest planted-bug rel, 'rows': [...]}}
    with op 'gemm' (matmul, matmul_multi, matmul_swiglu / 2) or 'flash'"""
    out = {(op, p): {"round": 0.0, "bug": math.inf, "rows": []} for op in ("gemm", "flash") for p in ("bf16", "f16")}
    out[("flash", "q8_0")] = {"round": 0.0, "bug": math.inf, "rows": []}

    def add(key, what, r, bug=None):
        o = out[key]
        o["round"] = max(o["round"], r)
        if bug is not None:
            o["bug"] = min(o["bug"], bug)
        o["rows"].append((what, r, bug))

    for prec in ("bf16", "f16"):
        for R, C, T, bias in MATMUL:
            rs = [gemm(np.random.default_rng(s), R, C, T, bias, prec) for s in range(SEEDS)]
            add(("gemm", prec), f"matmul {prec} {R}x{C} t={T}{' +bias' if bias else ''}", max(r for r, _ in rs),
                min(b for _, b in rs))
        for C, T, rows in MULTI:
            for R in rows:
                rs = [gemm(np.random.default_rng(100 + s), R, C, T, False, prec) for s in range(SEEDS)]
                add(("gemm", prec), f"matmul_multi {prec} {R}x{C} t={T}", max(r for r, _ in rs), min(b for _, b in rs))
            r = max(swiglu(np.random.default_rng(200 + s), rows[0], C, T, prec) for s in range(SEEDS))
            add(("gemm", prec), f"matmul_swiglu {prec} {rows[0]}x{C} t={T} (halved: the test allows 2 x tol)", r / 2)
    for kv in ("f32", "f16", "bf16", "q8_0"):
        prec = {"f16": "f16", "q8_0": "q8_0"}.get(kv, "bf16")   # q8_0: rounded to bf16, its own data
        for case in ATTN:
            n_ctx, Hkv, H, D, T, last = case
            rs = [attention(np.random.default_rng(300 + s), *case, kv) for s in range(SEEDS)]
            add(("flash", prec), f"attention flash, {kv} cache, ctx={n_ctx} H={H}/{Hkv} D={D} t={T}",
                max(r[0] for r in rs), min(min(r[1], r[2]) for r in rs))
    return out


def constants(path):
    """test_kernels.c's bf16 and f16 tolerances for the GEMM (matmul_tol) and flash attention."""
    src = open(path).read()
    found = {}
    m = re.search(r"ST_DTYPE_BF16 && g->cfg\.matmul_prec == ST_PREC_BF16[^)]*\)\s*return\s*([0-9.eE+-]+)\s*;", src)
    found["gemm bf16"] = float(m.group(1)) if m else None
    m = re.search(r"ST_DTYPE_F16 && g->cfg\.matmul_prec == ST_PREC_F16[^)]*\)\s*return\s*([0-9.eE+-]+)\s*;", src)
    found["gemm f16"] = float(m.group(1)) if m else None
    m = re.search(r"!flash \? 1e-5 : t == ST_DTYPE_F16 \? ([0-9.eE+-]+) : ([0-9.eE+-]+);", src)
    found["flash f16"], found["flash bf16"] = (float(m.group(1)), float(m.group(2))) if m else (None, None)
    found["flash q8_0"] = found["flash bf16"]   # a q8_0 cache gets the bf16 tolerance (its values rounded to bf16)
    m = re.search(r"t == ST_DTYPE_Q8_0 \? ([0-9.eE+-]+)f : 1\.0f", src)
    if not m or float(m.group(1)) != KV_Q8_SCALE:
        found["flash q8_0"] = None      # the model's data must be the test's
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 unless test_kernels.c's constants lie in the sound range")
    ap.add_argument("--source", default=os.path.join(HERE, "test_kernels.c"))
    args = ap.parse_args()
    t = table()
    for key, o in t.items():
        for what, r, bug in o["rows"]:
            print(f"{what:62s} rounding rel {r:.2e}" + (f"   smallest planted bug {bug:.2e}" if bug is not None else ""))
    for (op, prec), o in t.items():
        print(f"{op} {prec}: worst rounding {o['round']:.2e}, smallest bug {o['bug']:.2e} -> a sound tolerance lies in "
              f"[{2 * o['round']:.2e}, {o['bug'] / 2:.2e}]")
    if not args.check:
        return 0
    fails, n = [], 0
    for name, v in constants(args.source).items():
        op, prec = name.split()
        o = t[(op, prec)]
        lo, hi = 2 * o["round"], o["bug"] / 2
        n += 1
        if v is None:
            fails.append(f"{name}: constant not found in {args.source} (the pattern in kernel_bound.py constants())")
        elif not lo <= v <= hi:
            fails.append(f"{name}: test_kernels.c uses {v:g}, outside [{lo:.2e}, {hi:.2e}] (2 x worst rounding, "
                         f"half the smallest planted bug)")
        else:
            print(f"ok   {name} tolerance {v:g} in [{lo:.2e}, {hi:.2e}]")
    for f in fails:
        print("FAIL " + f)
    print(f"{n - len(fails)} passed, {len(fails)} failed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
