#!/usr/bin/env python3
"""Quantize the 2-D weights of an F32/F16/BF16 GGUF file (numpy + gguf-py).

    python3 tools/quantize.py IN.gguf OUT.gguf TYPE
    python3 tools/quantize.py --selftest          # every type on random rows, checked against gguf-py

TYPE is one of q8_0 q4_0 q4_1 q5_0 q5_1 iq4_nl q4_k q5_k q6_k, or q4_k_m:
llama.cpp's Q4_K_M mix (src/llama-quant.cpp, as planner/model.c models it):
Q4_K everywhere, Q6_K for output.weight and for attn_v/ffn_down of the
"more bits" layers (the first and last eighth and every third between).
1-D tensors (norms, biases, rope factors) stay F32; a row length that a type
cannot hold falls back as llama.cpp's quantizer does (Q4_K -> Q5_0, Q5_K ->
Q5_1, Q6_K -> Q8_0, IQ4_NL -> Q4_0; not a multiple of 32 -> F16).

Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 are gguf-py's own quantizers
(gguf.quants.quantize, bit-exact with ggml's reference). gguf-py cannot
quantize IQ4_NL and the K-quants; the quantizers below are simple, not
llama.cpp's search (per sub-block min/max, 6-bit scales, nearest levels), and
each one computes the values it means to store and asserts that
gguf.quants.dequantize of its blocks gives exactly those values, so every
block is read back by gguf-py (and by model/dtype.c) as intended.
"""
import argparse
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q
from gguf import quants

QK_K = 256
IQ4NL_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float32)

TYPES = {"q8_0": Q.Q8_0, "q4_0": Q.Q4_0, "q4_1": Q.Q4_1, "q5_0": Q.Q5_0, "q5_1": Q.Q5_1,
         "iq4_nl": Q.IQ4_NL, "q4_k": Q.Q4_K, "q5_k": Q.Q5_K, "q6_k": Q.Q6_K}
FALLBACK = {Q.Q4_K: Q.Q5_0, Q.Q5_K: Q.Q5_1, Q.Q6_K: Q.Q8_0, Q.IQ4_NL: Q.Q4_0}


def f16(a):
    """float32 -> (float16 bits as uint8 pairs, the float32 value they hold)"""
    h = np.asarray(a, dtype=np.float32).astype(np.float16)
    return h.view(np.uint8).reshape(*h.shape, 2), h.astype(np.float32)


def rint(a):
    return np.rint(a).astype(np.int32)


# ---- IQ4_NL ----------------------------------------------------------------------

def quantize_iq4_nl(x):
    """x (nb, 32) -> (blocks (nb, 18) uint8, values (nb, 32) float32)"""
    nb = x.shape[0]
    imax = np.abs(x).argmax(axis=1)
    xm = x[np.arange(nb), imax]
    best_err = np.full(nb, np.inf, dtype=np.float64)
    best_q = np.zeros((nb, 32), dtype=np.uint8)
    best_h = np.zeros((nb, 2), dtype=np.uint8)
    best_d = np.zeros(nb, dtype=np.float32)
    # the largest value on the code book's -127 or 113 end, a few scales around it
    for end in (-127.0, 113.0):
        for f in np.linspace(0.85, 1.15, 13):
            h, d = f16(xm / end * f)
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where(d[:, None] != 0, x / d[:, None], 0.0)
            q = np.abs(t[:, :, None] - IQ4NL_VALUES[None, None, :]).argmin(axis=2).astype(np.uint8)
            v = d[:, None] * IQ4NL_VALUES[q]
            err = ((v.astype(np.float64) - x) ** 2).sum(axis=1)
            better = err < best_err
            best_err = np.where(better, err, best_err)
            best_q[better] = q[better]
            best_h[better] = h[better]
            best_d[better] = d[better]
    qs = best_q[:, :16] | (best_q[:, 16:] << 4)
    blocks = np.concatenate([best_h, qs], axis=1)
    return blocks, (best_d[:, None] * IQ4NL_VALUES[best_q]).astype(np.float32)


# ---- K-quants: 6-bit sub-block scales and mins ------------------------------------

def pack_scale_min_k4(sc, m):
    """sc, m (nb, 8) in 0..63 -> scales (nb, 12) as get_scale_min_k4 reads them"""
    nb = sc.shape[0]
    out = np.zeros((nb, 12), dtype=np.uint8)
    sc = sc.astype(np.uint8)
    m = m.astype(np.uint8)
    out[:, 0:4] = (sc[:, 0:4] & 63) | ((sc[:, 4:8] >> 4) << 6)
    out[:, 4:8] = (m[:, 0:4] & 63) | ((m[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:8] & 0xF) | ((m[:, 4:8] & 0xF) << 4)
    return out


def kquant_levels(x, nmax):
    """x (nb, 256) -> per 32-element sub-block: 6-bit scale/min codes, f16 d/dmin,
    and the levels q in 0..nmax of every element, for y = d*sc*q - dmin*m."""
    nb = x.shape[0]
    xs = x.reshape(nb, 8, 32)
    mn = np.minimum(xs.min(axis=2), 0.0)
    mx = xs.max(axis=2)
    scale = (mx - mn) / nmax
    mins = -mn
    dh, d = f16(scale.max(axis=1) / 63)
    mh, dmin = f16(mins.max(axis=1) / 63)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d[:, None] > 0, np.clip(rint(scale / d[:, None]), 0, 63), 0)
        m = np.where(dmin[:, None] > 0, np.clip(rint(mins / dmin[:, None]), 0, 63), 0)
    ds = (d[:, None] * sc.astype(np.float32)).astype(np.float32)
    dm = (dmin[:, None] * m.astype(np.float32)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(ds[:, :, None] > 0, np.clip(rint((xs + dm[:, :, None]) / ds[:, :, None]), 0, nmax), 0)
    vals = (ds[:, :, None] * q.astype(np.float32) - dm[:, :, None]).astype(np.float32)
    return dh, mh, sc, m, q.astype(np.uint8), vals.reshape(nb, QK_K)


def quantize_q4_k(x):
    nb = x.shape[0]
    dh, mh, sc, m, q, vals = kquant_levels(x, 15)
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(nb, 128)   # chunk c: sub-blocks 2c (low) and 2c+1 (high)
    return np.concatenate([dh, mh, pack_scale_min_k4(sc, m), qs], axis=1), vals


def quantize_q5_k(x):
    nb = x.shape[0]
    dh, mh, sc, m, q, vals = kquant_levels(x, 31)
    lo = q & 0xF
    qs = (lo[:, 0::2, :] | (lo[:, 1::2, :] << 4)).reshape(nb, 128)
    qh = np.zeros((nb, 32), dtype=np.uint8)
    for s in range(8):            # bit s of qh[l]: the fifth bit of sub-block s, element l
        qh |= ((q[:, s, :] >> 4) & 1) << s
    return np.concatenate([dh, mh, pack_scale_min_k4(sc, m), qh, qs], axis=1), vals


def quantize_q6_k(x):
    """16 sub-blocks of 16 with int8 scales, levels q - 32 in -32..31, d last"""
    nb = x.shape[0]
    xs = x.reshape(nb, 16, 16)
    imax = np.abs(xs).argmax(axis=2)
    xm = np.take_along_axis(xs, imax[:, :, None], axis=2)[:, :, 0]
    scale = xm / -32.0
    dh, d = f16(np.abs(scale).max(axis=1) / 127)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d[:, None] > 0, np.clip(rint(scale / d[:, None]), -128, 127), 0)
    ds = (d[:, None] * sc.astype(np.float32)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        ql = np.where(ds[:, :, None] != 0, np.clip(rint(xs / ds[:, :, None]), -32, 31), 0)
    vals = (ds[:, :, None] * ql.astype(np.float32)).astype(np.float32).reshape(nb, QK_K)
    q = (ql + 32).astype(np.uint8).reshape(nb, 2, 4, 32)   # [half][quarter][l]: element 128h + 32k + l
    L = np.zeros((nb, 2, 64), dtype=np.uint8)
    H = np.zeros((nb, 2, 32), dtype=np.uint8)
    L[:, :, 0:32] = (q[:, :, 0] & 0xF) | ((q[:, :, 2] & 0xF) << 4)
    L[:, :, 32:64] = (q[:, :, 1] & 0xF) | ((q[:, :, 3] & 0xF) << 4)
    for k in range(4):
        H |= (q[:, :, k] >> 4) << (2 * k)
    blocks = np.concatenate([L.reshape(nb, 128), H.reshape(nb, 64), sc.astype(np.int8).view(np.uint8), dh], axis=1)
    return blocks, vals


OWN = {Q.IQ4_NL: quantize_iq4_nl, Q.Q4_K: quantize_q4_k, Q.Q5_K: quantize_q5_k, Q.Q6_K: quantize_q6_k}


def quantize(a, qtype):
    """a (rows, cols) float -> (rows, row_bytes) uint8 blocks of qtype. For the
    types quantized here, asserts gguf-py's dequantization returns exactly the
    intended values."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if qtype not in OWN:
        return quants.quantize(a, qtype)
    be, bb = gguf.GGML_QUANT_SIZES[qtype]
    rows, cols = a.shape
    assert cols % be == 0, (cols, qtype)
    blocks, vals = OWN[qtype](a.reshape(-1, be))
    assert blocks.shape[1] == bb and blocks.dtype == np.uint8, (blocks.shape, blocks.dtype)
    raw = np.ascontiguousarray(blocks.reshape(rows, cols // be * bb))
    back = quants.dequantize(raw, qtype)
    if not np.array_equal(back.view(np.uint32), vals.reshape(rows, cols).view(np.uint32)):
        bad = int((back.view(np.uint32) != vals.reshape(rows, cols).view(np.uint32)).sum())
        raise AssertionError(f"{qtype.name}: gguf-py dequantizes {bad} values differently from what was quantized")
    return raw


def row_type(qtype, ne0):
    """the type a row of ne0 elements gets (llama.cpp's fallbacks)"""
    t = qtype
    while ne0 % gguf.GGML_QUANT_SIZES[t][0]:
        if t in FALLBACK:
            t = FALLBACK[t]
        else:
            return Q.F16
    return t


def more_bits(layer, n_layer):
    return layer < n_layer // 8 or layer >= 7 * n_layer // 8 or (layer - n_layer // 8) % 3 == 2


def mix_type(name, mix, n_layer):
    """the type of a 2-D tensor under TYPE (a single type, or q4_k_m)"""
    if mix != "q4_k_m":
        return TYPES[mix]
    if name == "output.weight":
        return Q.Q6_K
    if name.startswith("blk.") and (name.endswith("attn_v.weight") or name.endswith("ffn_down.weight")):
        return Q.Q6_K if more_bits(int(name.split(".")[1]), n_layer) else Q.Q4_K
    return Q.Q4_K


def quantize_file(src, dst, mix):
    r = gguf.GGUFReader(src)
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    n_layer = int(r.fields[f"{arch}.block_count"].parts[-1][0])
    w = gguf.GGUFWriter(dst, arch)
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        if k == "general.file_type":
            continue
        vt = f.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            et = f.types[-1]
            if et == gguf.GGUFValueType.STRING:
                val = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
            else:
                val = [f.parts[i].tolist()[0] for i in f.data]
            w.add_array(k, val) if et == gguf.GGUFValueType.STRING else w.add_key_value(k, val, vt, sub_type=et)
        elif vt == gguf.GGUFValueType.STRING:
            w.add_string(k, bytes(f.parts[f.data[0]]).decode("utf-8"))
        else:
            w.add_key_value(k, f.parts[f.data[0]].tolist()[0], vt)
    ftype = {"q8_0": 7, "q4_0": 2, "q4_1": 3, "q5_0": 8, "q5_1": 9, "iq4_nl": 25, "q4_k": 15, "q5_k": 17, "q6_k": 18,
             "q4_k_m": 15}[mix]
    w.add_file_type(ftype)
    for t in r.tensors:
        shape = [int(d) for d in reversed(t.shape)]       # numpy order: [ne1, ne0]
        a = quants.dequantize(t.data, t.tensor_type).reshape(shape) if t.tensor_type not in (Q.F32,) \
            else np.array(t.data, dtype=np.float32).reshape(shape)
        if a.ndim == 1:
            w.add_tensor(t.name, a.astype(np.float32))
            continue
        qt = row_type(mix_type(t.name, mix, n_layer), shape[-1])
        if qt == Q.F16:
            w.add_tensor(t.name, a.astype(np.float16))
        else:
            w.add_tensor(t.name, quantize(a, qt), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def selftest():
    rng = np.random.default_rng(7)
    ok = True
    for name, qt in TYPES.items():
        be = gguf.GGML_QUANT_SIZES[qt][0]
        a = (rng.standard_normal((9, 4 * QK_K)) * np.exp2(rng.integers(-8, 4, (9, 1)))).astype(np.float32)
        a[3, :be] = 0.0                                    # an all-zero block
        a[4, :be] = np.abs(a[4, :be])                      # a block without negatives
        raw = quantize(a, qt)                              # asserts gguf-py reads back the intended values
        back = quants.dequantize(raw, qt)
        rel = float(np.sqrt(((back - a) ** 2).sum() / (a ** 2).sum()))
        limit = {"q8_0": 0.01, "q5_0": 0.06, "q5_1": 0.06, "q5_k": 0.06, "q6_k": 0.04}.get(name, 0.13)
        good = rel < limit and np.isfinite(back).all() and (back[3, :be] == 0).all()
        ok &= good
        print(f"{name:7s} rel rms error {rel:.4f} (limit {limit}) {'ok' if good else 'FAIL'}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", nargs="?")
    ap.add_argument("dst", nargs="?")
    ap.add_argument("type", nargs="?", choices=sorted(list(TYPES) + ["q4_k_m"]))
    ap.add_argument("--selftest", action="store_true")
    args = ap.parse_args()
    if args.selftest:
        sys.exit(0 if selftest() else 1)
    if not (args.src and args.dst and args.type):
        ap.error("give IN.gguf OUT.gguf TYPE (or --selftest)")
    quantize_file(args.src, args.dst, args.type)


if __name__ == "__main__":
    main()
