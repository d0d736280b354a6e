#!/usr/bin/env python3
"""Write a GGUF (arch qwen3) holding exactly the weights and tokenizer of a Hugging Face Qwen3
directory made by tools/train_tiny/train.py, then verify it with gguf-py's GGUFReader.

    python3 tools/train_tiny/to_gguf.py HF_DIR [-o OUT.gguf]     # default OUT = HF_DIR.gguf
    python3 tools/train_tiny/to_gguf.py HF_DIR --verify-only [-o OUT.gguf]

Weights keep their stored type (F16 or BF16 matrices); 1-D norm weights are written as F32 (an
exact widening, as llama.cpp's converter does). Tensor names and metadata keys follow
/work/shared/reference/formats.md sections 2.1-2.3 (qwen3: q_norm/k_norm, no biases, no Q/K
permutation, head_dim from attention.key_length); tied embeddings -> no output.weight. The
tokenizer is written as tokenizer.ggml.model "gpt2", pre "qwen2". Needs: numpy, gguf, safetensors.

Verification (always run after writing) reads the file back with GGUFReader and checks, against the
HF directory read through the `safetensors` and `tokenizers` packages: every tensor's type, shape
and values (bit-exact after widening), the tensor set, every hyperparameter key, the token list,
token types, merges and special ids. With --forward-check it also runs a numpy float64 forward pass
read only from the GGUF and compares its logits with transformers (float32) on the HF directory.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

try:
    import gguf
    from gguf import GGMLQuantizationType as QT
except ImportError:
    sys.stderr.write("to_gguf.py: error: the Python package 'gguf' is not installed\n"
                     "hint: pip install gguf numpy safetensors tokenizers\n")
    sys.exit(1)

ARCH = "qwen3"
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5
LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
ST_DTYPES = {"F32": (np.float32, QT.F32), "F16": (np.float16, QT.F16), "BF16": (np.uint16, QT.BF16)}


def die(msg, hint):
    sys.stderr.write(f"to_gguf.py: error: {msg}\nhint: {hint}\n")
    sys.exit(1)


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".", 3)
    if len(parts) == 4 and parts[0] == "model" and parts[1] == "layers" and parts[3] in LAYER_MAP:
        return f"blk.{int(parts[2])}.{LAYER_MAP[parts[3]]}"
    return None


def read_safetensors(path):
    """Minimal reader: name -> (st dtype, shape, raw numpy array in storage dtype)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        die(f"{path}: {len(data)} bytes, too short for a safetensors header", "re-copy the file")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        die(f"{path}: header length {n} runs past the end of the file ({len(data)} bytes)",
            "the file is truncated")
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        if dt not in ST_DTYPES:
            die(f"{path}: tensor {name} has dtype {dt}", "expected F32, F16 or BF16")
        b, e = info["data_offsets"]
        arr = np.frombuffer(data, dtype=ST_DTYPES[dt][0], count=(e - b) // np.dtype(
            ST_DTYPES[dt][0]).itemsize, offset=base + b).reshape(info["shape"])
        out[name] = (dt, tuple(info["shape"]), arr)
    return out


def widen(dt, arr):
    if dt == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32)


def load_tokenizer(hf_dir, vocab_size):
    tj = json.load(open(os.path.join(hf_dir, "tokenizer.json"), encoding="utf-8"))
    model = tj.get("model", {})
    if model.get("type") != "BPE":
        die(f"{hf_dir}/tokenizer.json: model.type is {model.get('type')!r}", "expected BPE")
    id2tok = {}
    for t, i in model["vocab"].items():
        id2tok[i] = t
    types = {i: TOKEN_NORMAL for i in id2tok}
    for at in tj.get("added_tokens", []):
        id2tok[at["id"]] = at["content"]
        types[at["id"]] = TOKEN_CONTROL if at.get("special") else TOKEN_USER_DEFINED
    n = max(id2tok) + 1
    if n > vocab_size:
        die(f"tokenizer has ids up to {n - 1} but config vocab_size is {vocab_size}",
            "the config and the tokenizer do not belong together")
    tokens, ttypes = [], []
    for i in range(vocab_size):
        if i in id2tok:
            tokens.append(id2tok[i])
            ttypes.append(types[i])
        else:  # padding up to config vocab_size, as the Qwen converter does
            tokens.append(f"[PAD{i}]")
            ttypes.append(TOKEN_UNUSED)
    merges = []
    for m in model.get("merges", []):
        merges.append(m if isinstance(m, str) else f"{m[0]} {m[1]}")
    return tokens, ttypes, merges


def expected(hf_dir):
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    if cfg.get("model_type") != "qwen3":
        die(f"{hf_dir}/config.json: model_type is {cfg.get('model_type')!r}", "expected qwen3")
    rp = cfg.get("rope_parameters") or {}
    theta = rp.get("rope_theta", cfg.get("rope_theta"))
    if theta is None:
        die(f"{hf_dir}/config.json: no rope_theta", "expected rope_theta or rope_parameters")
    if rp.get("rope_type", "default") != "default" or cfg.get("rope_scaling"):
        die(f"{hf_dir}/config.json: rope scaling is not supported here", "plain RoPE only")
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    kv = {
        f"{ARCH}.context_length": cfg["max_position_embeddings"],
        f"{ARCH}.embedding_length": cfg["hidden_size"],
        f"{ARCH}.block_count": cfg["num_hidden_layers"],
        f"{ARCH}.feed_forward_length": cfg["intermediate_size"],
        f"{ARCH}.attention.head_count": cfg["num_attention_heads"],
        f"{ARCH}.attention.head_count_kv": cfg.get("num_key_value_heads") or
        cfg["num_attention_heads"],
        f"{ARCH}.attention.layer_norm_rms_epsilon": cfg["rms_norm_eps"],
        f"{ARCH}.rope.freq_base": float(theta),
        f"{ARCH}.attention.key_length": hd,
        f"{ARCH}.attention.value_length": hd,
        f"{ARCH}.rope.dimension_count": hd,
        f"{ARCH}.vocab_size": cfg["vocab_size"],
    }
    return cfg, kv


def special_ids(cfg):
    eos = cfg.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) else eos
    bos = cfg.get("bos_token_id")
    pad = cfg.get("pad_token_id")
    return {"eos": eos, "bos": bos if bos is not None else eos, "pad": pad if pad is not None
            else eos}


def write(hf_dir, out_path):
    cfg, kv = expected(hf_dir)
    st_path = os.path.join(hf_dir, "model.safetensors")
    if not os.path.isfile(st_path):
        die(f"{st_path}: no such file", "train.py writes a single model.safetensors")
    tensors = read_safetensors(st_path)
    tokens, ttypes, merges = load_tokenizer(hf_dir, cfg["vocab_size"])
    ids = special_ids(cfg)
    name = os.path.basename(os.path.normpath(hf_dir))

    w = gguf.GGUFWriter(out_path, ARCH)
    w.add_name(name)
    w.add_description("strata's bundled tiny model (tools/train_tiny): Qwen3 architecture trained "
                      "on the King James Bible text of the Debian package bible-kjv-text")
    mat_types = {dt for (dt, shape, _) in tensors.values() if len(shape) == 2}
    if mat_types == {"F16"}:
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    elif mat_types == {"BF16"}:
        w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    elif mat_types == {"F32"}:
        w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(kv[f"{ARCH}.context_length"])
    w.add_embedding_length(kv[f"{ARCH}.embedding_length"])
    w.add_block_count(kv[f"{ARCH}.block_count"])
    w.add_feed_forward_length(kv[f"{ARCH}.feed_forward_length"])
    w.add_head_count(kv[f"{ARCH}.attention.head_count"])
    w.add_head_count_kv(kv[f"{ARCH}.attention.head_count_kv"])
    w.add_layer_norm_rms_eps(kv[f"{ARCH}.attention.layer_norm_rms_epsilon"])
    w.add_rope_freq_base(kv[f"{ARCH}.rope.freq_base"])
    w.add_key_length(kv[f"{ARCH}.attention.key_length"])
    w.add_value_length(kv[f"{ARCH}.attention.value_length"])
    w.add_rope_dimension_count(kv[f"{ARCH}.rope.dimension_count"])
    w.add_vocab_size(kv[f"{ARCH}.vocab_size"])

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(ttypes)
    w.add_token_merges(merges)
    w.add_bos_token_id(ids["bos"])
    w.add_eos_token_id(ids["eos"])
    w.add_pad_token_id(ids["pad"])
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)

    order = list(LAYER_MAP)

    def sort_key(n):  # llama.cpp's order: token_embd, blk.0 .. blk.N (each in LAYER_MAP order), output_norm
        if n.startswith("model.layers."):
            _, _, idx, rest = n.split(".", 3)
            return (1, int(idx), order.index(rest) if rest in order else len(order), n)
        return (0 if "embed" in n else 2, 0, 0, n)
    names = sorted(tensors, key=sort_key)
    for hf in names:
        dt, shape, arr = tensors[hf]
        g = gguf_name(hf)
        if g is None:
            die(f"{st_path}: tensor {hf} has no qwen3 GGUF name", "unexpected tensor for qwen3")
        if g == "output.weight" and cfg.get("tie_word_embeddings"):
            continue
        if len(shape) == 1:
            w.add_tensor(g, widen(dt, arr))
        elif dt == "BF16":
            w.add_tensor(g, np.ascontiguousarray(arr).view(np.uint8), raw_dtype=QT.BF16)
        else:
            w.add_tensor(g, np.ascontiguousarray(arr))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def field_value(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    return f.contents()


def verify(hf_dir, out_path):
    from safetensors import safe_open
    from tokenizers import Tokenizer

    cfg, kv = expected(hf_dir)
    ids = special_ids(cfg)
    r = gguf.GGUFReader(out_path)
    errors = []

    def check(cond, msg):
        if not cond:
            errors.append(msg)

    check(field_value(r, "general.architecture") == ARCH, "general.architecture")
    for k, v in kv.items():
        got = field_value(r, k)
        if isinstance(v, float):
            check(got is not None and abs(got - v) <= abs(v) * 1e-6, f"{k}: {got} != {v}")
        else:
            check(got == v, f"{k}: {got} != {v}")
    check(field_value(r, "tokenizer.ggml.model") == "gpt2", "tokenizer.ggml.model")
    check(field_value(r, "tokenizer.ggml.pre") == "qwen2", "tokenizer.ggml.pre")
    check(field_value(r, "tokenizer.ggml.eos_token_id") == ids["eos"], "eos_token_id")
    check(field_value(r, "tokenizer.ggml.bos_token_id") == ids["bos"], "bos_token_id")
    check(field_value(r, "tokenizer.ggml.add_bos_token") is False, "add_bos_token")

    # tokenizer, through the `tokenizers` package
    tok = Tokenizer.from_file(os.path.join(hf_dir, "tokenizer.json"))
    g_tokens = field_value(r, "tokenizer.ggml.tokens")
    g_types = field_value(r, "tokenizer.ggml.token_type")
    check(len(g_tokens) == cfg["vocab_size"], f"token count {len(g_tokens)}")
    specials = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
    for i in range(tok.get_vocab_size(with_added_tokens=True)):
        t = tok.id_to_token(i)
        if g_tokens[i] != t:
            errors.append(f"token {i}: {g_tokens[i]!r} != {t!r}")
            break
        want = TOKEN_CONTROL if t in specials else TOKEN_NORMAL
        if g_types[i] != want:
            errors.append(f"token {i} type {g_types[i]} != {want}")
            break
    tj = json.loads(tok.to_str())
    want_merges = [m if isinstance(m, str) else f"{m[0]} {m[1]}" for m in tj["model"]["merges"]]
    check(field_value(r, "tokenizer.ggml.merges") == want_merges, "merges differ")

    # tensors, through the `safetensors` package
    got = {t.name: t for t in r.tensors}
    want_names = set()
    with safe_open(os.path.join(hf_dir, "model.safetensors"), framework="numpy") as f:
        for hf in f.keys():
            g = gguf_name(hf)
            if g == "output.weight" and cfg.get("tie_word_embeddings"):
                continue
            want_names.add(g)
            a = f.get_tensor(hf)
            if a.dtype == np.float16 or a.dtype == np.float32:
                ref = a.astype(np.float32)
            else:
                errors.append(f"{hf}: dtype {a.dtype} not checked")
                continue
            t = got.get(g)
            if t is None:
                errors.append(f"missing tensor {g}")
                continue
            if list(t.shape) != list(reversed(a.shape)):
                errors.append(f"{g}: GGUF dims {list(t.shape)} != reversed HF shape {a.shape}")
                continue
            want_type = QT.F32 if a.ndim == 1 else {np.dtype(np.float16): QT.F16,
                                                     np.dtype(np.float32): QT.F32}[a.dtype]
            if t.tensor_type != want_type:
                errors.append(f"{g}: type {t.tensor_type.name} != {want_type.name}")
            vals = np.asarray(t.data).astype(np.float32).reshape(a.shape)
            if not np.array_equal(vals, ref):
                errors.append(f"{g}: values differ from {hf}")
    check(set(got) == want_names, f"tensor set differs: extra {sorted(set(got) - want_names)}, "
                                  f"missing {sorted(want_names - set(got))}")
    if errors:
        die(f"{out_path}: verification failed: " + "; ".join(errors[:10]),
            "the GGUF does not match the HF directory")
    n_el = sum(int(t.n_elements) for t in r.tensors)
    print(f"verified {out_path}: {len(r.tensors)} tensors ({n_el} weights) equal to "
          f"{hf_dir}/model.safetensors, {len(g_tokens)} tokens, {len(want_merges)} merges, "
          f"{os.path.getsize(out_path)} bytes")


def gguf_forward(path, ids):
    """Reference Qwen3 forward pass in numpy (float64) read only from the GGUF, per formats.md 4.3:
    returns logits [len(ids), vocab] for one sequence from position 0."""
    r = gguf.GGUFReader(path)
    meta = {k: f.contents() for k, f in r.fields.items() if k.startswith(ARCH + ".")}
    T = {t.name: np.asarray(t.data).astype(np.float64).reshape(list(reversed(
        [int(d) for d in t.shape]))) for t in r.tensors}
    L = meta[f"{ARCH}.block_count"]
    H = meta[f"{ARCH}.attention.head_count"]
    Hkv = meta[f"{ARCH}.attention.head_count_kv"]
    D = meta[f"{ARCH}.attention.key_length"]
    eps = meta[f"{ARCH}.attention.layer_norm_rms_epsilon"]
    theta = meta[f"{ARCH}.rope.freq_base"]
    n = len(ids)

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    inv = 1.0 / theta ** (np.arange(0, D, 2) / D)
    ang = np.arange(n)[:, None] * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(x):  # NEOX: pairs (i, i + D/2)
        a, b = x[..., :D // 2], x[..., D // 2:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], -1)

    x = T["token_embd.weight"][ids]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(L):
        p = f"blk.{i}."
        h = rms(x, T[p + "attn_norm.weight"])
        q = (h @ T[p + "attn_q.weight"].T).reshape(n, H, D)
        k = (h @ T[p + "attn_k.weight"].T).reshape(n, Hkv, D)
        v = (h @ T[p + "attn_v.weight"].T).reshape(n, Hkv, D)
        q = rope(rms(q, T[p + "attn_q_norm.weight"]))
        k = rope(rms(k, T[p + "attn_k_norm.weight"]))
        out = np.empty((n, H, D))
        for hh in range(H):
            g = hh // (H // Hkv)
            sc = q[:, hh] @ k[:, g].T / np.sqrt(D) + mask
            sc = np.exp(sc - sc.max(-1, keepdims=True))
            out[:, hh] = (sc / sc.sum(-1, keepdims=True)) @ v[:, g]
        x = x + out.reshape(n, H * D) @ T[p + "attn_output.weight"].T
        h2 = rms(x, T[p + "ffn_norm.weight"])
        gt = h2 @ T[p + "ffn_gate.weight"].T
        x = x + ((gt / (1 + np.exp(-gt))) * (h2 @ T[p + "ffn_up.weight"].T)) @ \
            T[p + "ffn_down.weight"].T
    x = rms(x, T["output_norm.weight"])
    return x @ T.get("output.weight", T["token_embd.weight"]).T


def forward_check(hf_dir, out_path, text):
    """Compares gguf_forward() on the GGUF with transformers (float32) on the HF directory."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM
    ids = Tokenizer.from_file(os.path.join(hf_dir, "tokenizer.json")).encode(text).ids[:48]
    ref = gguf_forward(out_path, ids)
    m = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32,
                                             attn_implementation="eager").eval()
    with torch.no_grad():
        got = m(input_ids=torch.tensor([ids])).logits[0].double().numpy()
    diff = float(np.abs(got - ref).max())
    same = bool((got.argmax(-1) == ref.argmax(-1)).all())
    if diff > 2e-3 or not same:
        die(f"{out_path}: numpy forward pass from the GGUF differs from transformers on the HF "
            f"directory: max |logit diff| {diff:.2e}, argmax equal: {same}",
            "tensor names, shapes or hyperparameters in the GGUF are wrong")
    print(f"forward check: {len(ids)} tokens, max |logit diff| GGUF-numpy vs transformers "
          f"{diff:.2e}, argmax identical")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("hf_dir")
    ap.add_argument("-o", "--out", help="output .gguf (default: HF_DIR.gguf beside the folder)")
    ap.add_argument("--verify-only", action="store_true")
    ap.add_argument("--forward-check", action="store_true",
                    help="also compare a numpy forward pass of the GGUF with transformers "
                         "(needs torch + transformers)")
    a = ap.parse_args()
    hf_dir = os.path.normpath(a.hf_dir)
    if not os.path.isfile(os.path.join(hf_dir, "config.json")):
        die(f"{hf_dir}/config.json: no such file", "pass the folder written by train.py")
    out = a.out or hf_dir + ".gguf"
    if not a.verify_only:
        write(hf_dir, out)
    verify(hf_dir, out)
    if a.forward_check:
        forward_check(hf_dir, out, "And God said, Let there be light: and there was light.\n"
                      "And God saw the light, that it was good: and God divided the light from "
                      "the darkness.\n")


if __name__ == "__main__":
    main()
