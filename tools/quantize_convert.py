#!/usr/bin/env python3
"""Hugging Face Qwen2 directory (config.json + *.safetensors) -> GGUF, the
input of llama.cpp's llama-quantize and of tools/quantize.py.

    python3 tools/quantize_convert.py HF_DIR OUT.gguf [--tokenizer tokenizer.json] [--outtype bf16|f16|f32]

Written for bench/quant_compare.sh: the 7B Qwen2.5-shaped random model of
tools/make_random_model.py has no tokenizer, and llama.cpp's
convert_hf_to_gguf.py refuses a tokenizer it does not recognise. This writes
the tensors as llama.cpp's converter names them (Qwen2: GGUF dims [in, out],
no row permutation) in the HF dtype (bf16 stays bf16, bit for bit), and a
byte-level BPE vocabulary from --tokenizer (a tokenizer.json; default
models/tiny-kjv's) padded with [PAD<i>] entries to config.vocab_size, as the
converter pads Qwen vocabularies. Needs numpy and gguf-py only (the
safetensors files are read by their JSON header and memory-mapped, so a
15 GB model costs no RAM).
"""
import argparse
import glob
import json
import os
import struct

import numpy as np

import gguf

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
HF_TO_GGUF = {
    "input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias", "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
}
ST_DTYPES = {"BF16": (np.uint16, gguf.GGMLQuantizationType.BF16), "F16": (np.float16, gguf.GGMLQuantizationType.F16),
             "F32": (np.float32, gguf.GGMLQuantizationType.F32)}


def safetensors_tensors(path):
    """{name: (numpy memmap of the raw elements, dtype string, shape)}"""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in ST_DTYPES:
            raise SystemExit(f"{path}: tensor {name}: dtype {info['dtype']} (BF16, F16 or F32)")
        npt = ST_DTYPES[info["dtype"]][0]
        a, b = info["data_offsets"]
        count = (b - a) // np.dtype(npt).itemsize
        out[name] = (np.memmap(path, dtype=npt, mode="r", offset=8 + n + a, shape=(count,)), info["dtype"],
                     info["shape"])
    return out


def convert(arr, st_dtype, shape, outtype):
    """(array to write, raw_dtype or None): the HF dtype kept unless outtype says otherwise"""
    a = np.asarray(arr).reshape(shape)
    if st_dtype == "BF16":
        f32 = (a.astype(np.uint32) << 16).view(np.float32)
        if outtype == "bf16":
            return a.view(np.uint8).reshape(*shape[:-1], shape[-1] * 2), gguf.GGMLQuantizationType.BF16
        return (f32.astype(np.float16) if outtype == "f16" else f32), None
    f = a.astype(np.float32)
    if outtype == "bf16":
        u = f.view(np.uint32).astype(np.uint64)
        b = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        return b.view(np.uint8).reshape(*shape[:-1], shape[-1] * 2), gguf.GGMLQuantizationType.BF16
    return (f.astype(np.float16) if outtype == "f16" else f), None


def add_vocab(w, tokenizer_json, n_vocab):
    tok = json.load(open(tokenizer_json))
    vocab = tok["model"]["vocab"]
    tokens = [None] * max(len(vocab), 1)
    for s, i in vocab.items():
        if i >= len(tokens):
            tokens.extend([None] * (i + 1 - len(tokens)))
        tokens[i] = s
    types = [gguf.TokenType.NORMAL] * len(tokens)
    for a in tok.get("added_tokens", []):
        i = a["id"]
        if i >= len(tokens):
            tokens.extend([None] * (i + 1 - len(tokens)))
            types.extend([gguf.TokenType.NORMAL] * (i + 1 - len(types)))
        tokens[i] = a["content"]
        types[i] = gguf.TokenType.CONTROL if a.get("special") else gguf.TokenType.USER_DEFINED
    if len(tokens) > n_vocab:
        raise SystemExit(f"{tokenizer_json}: {len(tokens)} tokens, the model has {n_vocab}")
    for i in range(len(tokens)):
        if tokens[i] is None:
            tokens[i], types[i] = f"[PAD{i}]", gguf.TokenType.UNUSED
    for i in range(len(tokens), n_vocab):
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    eos = next((a["id"] for a in tok.get("added_tokens", []) if a["content"] == "<|endoftext|>"), None)
    if eos is not None:
        w.add_eos_token_id(eos)
        w.add_bos_token_id(eos)
        w.add_add_bos_token(False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hf_dir")
    ap.add_argument("out")
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "models", "tiny-kjv", "tokenizer.json"))
    ap.add_argument("--outtype", choices=["bf16", "f16", "f32"], default="bf16")
    args = ap.parse_args()
    cfg = json.load(open(os.path.join(args.hf_dir, "config.json")))
    if cfg.get("model_type") != "qwen2":
        raise SystemExit(f"{args.hf_dir}/config.json: model_type {cfg.get('model_type')!r} (this converter writes qwen2)")
    tensors = {}
    for p in sorted(glob.glob(os.path.join(args.hf_dir, "*.safetensors"))):
        tensors.update(safetensors_tensors(p))
    E, H = cfg["hidden_size"], cfg["num_attention_heads"]
    L, V = cfg["num_hidden_layers"], cfg["vocab_size"]
    w = gguf.GGUFWriter(args.out, "qwen2")
    w.add_name(os.path.basename(os.path.normpath(args.hf_dir)))
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(E)
    w.add_block_count(L)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(H)
    w.add_head_count_kv(cfg.get("num_key_value_heads") or H)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    rp = cfg.get("rope_parameters") or {}
    w.add_rope_freq_base(rp.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    w.add_vocab_size(V)
    w.add_file_type({"bf16": gguf.LlamaFileType.MOSTLY_BF16, "f16": gguf.LlamaFileType.MOSTLY_F16,
                     "f32": gguf.LlamaFileType.ALL_F32}[args.outtype])
    add_vocab(w, args.tokenizer, V)

    def put(gname, hname, one_d_f32=False):
        arr, dt, shape = tensors[hname]
        data, raw = convert(arr, dt, shape, "f32" if one_d_f32 else args.outtype)
        w.add_tensor(gname, data, raw_dtype=raw)

    put("token_embd.weight", "model.embed_tokens.weight")
    for l in range(L):
        for hf, gg in HF_TO_GGUF.items():
            key = f"model.layers.{l}.{hf}"
            if key in tensors:
                put(f"blk.{l}.{gg}", key, one_d_f32=len(tensors[key][2]) == 1)
    put("output_norm.weight", "model.norm.weight", one_d_f32=True)
    if "lm_head.weight" in tensors and not cfg.get("tie_word_embeddings", False):
        put("output.weight", "lm_head.weight")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()


if __name__ == "__main__":
    main()
