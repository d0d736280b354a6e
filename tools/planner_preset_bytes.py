#!/usr/bin/env python3
"""Reference byte counts for planner presets, computed independently of the C
code: quant block sizes come from gguf-py (gguf.GGML_QUANT_SIZES), the per-tensor
type follows llama.cpp's llama_tensor_get_type for the mix (src/llama-quant.cpp).

Writes tests/fixtures/planner/preset_bytes.json, read by tests/planner/test_memory.c.
Run: python3 tools/planner_preset_bytes.py   (needs: pip install gguf pyyaml)"""
import json
import os

import gguf
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Q = gguf.GGMLQuantizationType
BASE = {'f32': Q.F32, 'f16': Q.F16, 'bf16': Q.BF16, 'q8_0': Q.Q8_0, 'q6_k': Q.Q6_K,
        'q5_k_m': Q.Q5_K, 'q4_k_m': Q.Q4_K, 'q4_0': Q.Q4_0}
KQ = {Q.Q4_K, Q.Q5_K, Q.Q6_K}


def more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def ttype(mix, kind, ne0, layer, n_layer, tied, is70b):
    base = BASE[mix]
    if mix in ('f32', 'f16', 'bf16'):
        return base
    t = base
    if kind == 'output' or (kind == 'embd' and tied):
        t = Q.Q8_0 if ne0 % 256 else (base if base == Q.Q8_0 else Q.Q6_K)
    elif kind == 'v':
        if mix in ('q4_k_m', 'q5_k_m') and more_bits(layer, n_layer):
            t = Q.Q6_K
        if is70b and t == Q.Q4_K:
            t = Q.Q5_K
    elif kind == 'down':
        if mix in ('q4_k_m', 'q5_k_m') and more_bits(layer, n_layer):
            t = Q.Q6_K
    if t in KQ and ne0 % 256:
        t = {Q.Q4_K: Q.Q5_0, Q.Q5_K: Q.Q5_1, Q.Q6_K: Q.Q8_0}[t]
    if ne0 % gguf.GGML_QUANT_SIZES[t][0]:
        t = Q.F16
    return t


def nbytes(t, rows, cols):
    blk, size = gguf.GGML_QUANT_SIZES[t]
    assert cols % blk == 0
    return rows * (cols // blk) * size


def model_bytes(p, mix):
    E, F, L = p['n_embd'], p['n_ff'], p['n_layer']
    qd, kvd, V = p['n_head'] * p['head_dim'], p['n_head_kv'] * p['head_dim'], p['n_vocab']
    tied = p['tied_embeddings']
    is70b = L == 80 and p['arch'] != 'qwen3'
    layers = []
    for l in range(L):
        b = 2 * E * 4
        if p['qkv_bias']:
            b += (qd + 2 * kvd) * 4
        if p['qk_norm']:
            b += 2 * p['head_dim'] * 4
        for kind, rows, cols in (('q', qd, E), ('k', kvd, E), ('v', kvd, E), ('o', E, qd),
                                 ('gate', F, E), ('up', F, E), ('down', E, F)):
            b += nbytes(ttype(mix, kind, cols, l, L, tied, is70b), rows, cols)
        layers.append(b)
    embd = nbytes(ttype(mix, 'embd', E, 0, L, tied, is70b), V, E)
    lm_head = embd if tied else nbytes(ttype(mix, 'output', E, 0, L, False, is70b), V, E)
    rope = p['head_dim'] // 2 * 4 if p['arch'] == 'llama' and p['n_ctx_train'] > 8192 else 0
    total = sum(layers) + embd + E * 4 + rope + (0 if tied else lm_head)
    return {'layer_bytes': layers, 'embd_bytes': embd, 'lm_head_bytes': lm_head, 'shared_bytes': rope,
            'total_bytes': total}


def main():
    with open(os.path.join(ROOT, 'configs', 'presets.yaml')) as f:
        presets = {p['name']: p for p in yaml.safe_load(f)['presets']}
    cases = [('qwen2.5-0.5b', 'q4_k_m'), ('qwen2.5-0.5b', 'bf16'), ('qwen2.5-7b', 'f16'), ('qwen2.5-7b', 'q4_k_m'),
             ('qwen2.5-7b', 'q8_0'), ('qwen2.5-32b', 'q4_k_m'), ('qwen2.5-72b', 'q4_k_m'), ('qwen2.5-72b', 'bf16'),
             ('qwen3-0.6b', 'q6_k'), ('qwen3-8b', 'q5_k_m'), ('llama-3.1-8b', 'q4_k_m'), ('llama-3.1-8b', 'q4_0'),
             ('llama-3.1-70b', 'q4_k_m'), ('llama-2-7b', 'q4_0'), ('llama-2-7b', 'f16'),
             ('llama-2-7b', 'q8_0')]
    out = []
    for name, mix in cases:
        r = model_bytes(presets[name], mix)
        r.update({'preset': name, 'quant': mix})
        out.append(r)
    path = os.path.join(ROOT, 'tests', 'fixtures', 'planner', 'preset_bytes.json')
    with open(path, 'w') as f:
        json.dump({'generator': 'tools/planner_preset_bytes.py (gguf-py GGML_QUANT_SIZES)', 'cases': out}, f)
        f.write('\n')
    for r in out:
        print('%-14s %-7s %16d bytes (%.2f GiB)' % (r['preset'], r['quant'], r['total_bytes'], r['total_bytes'] / 2**30))


if __name__ == '__main__':
    main()
