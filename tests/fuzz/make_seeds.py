#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/).

Seeds are small valid inputs that reach deep: a fuzzer mutating a file that
loads explores the checks after the header, not only the header. Each seed is
written here from first principles (gguf-py, safetensors, json) or copied from
the project's fixtures and configs, so `make_seeds.py` can make them again:

  .venv/bin/python3 tests/fuzz/make_seeds.py [--strata build/strata]

--strata is needed for the plan_yaml seeds (plans written by `strata plan -o`).
Files a fuzzer found interesting are kept under tests/fuzz/regress/<target>/,
never here. Needs numpy, gguf, safetensors.
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")
SEP = b"\n@@strata-part@@\n"   # FZ_SEPARATOR in fuzz.h


def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


B2U = bytes_to_unicode()
BYTE_TOKENS = [B2U[b] for b in range(256)]
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "G"), ("o", "d"), ("Ġ", "a")]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def vocab():
    toks = list(BYTE_TOKENS)
    for a, b in MERGES:
        toks.append(a + b)
    return toks


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- micro models ------------------------------------------------------------

def micro_weights(arch, E, H, Hkv, D, F, L, V, seed=1):
    rng = np.random.default_rng(seed)
    w = {}

    def m(rows, cols):
        return (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)

    w["embd"] = m(V, E)
    w["norm"] = np.ones(E, np.float32)
    layers = []
    for _ in range(L):
        t = {"attn_norm": np.ones(E, np.float32), "q": m(H * D, E), "k": m(Hkv * D, E), "v": m(Hkv * D, E),
             "o": m(E, H * D), "ffn_norm": np.ones(E, np.float32), "gate": m(F, E), "up": m(F, E), "down": m(E, F)}
        if arch == "qwen2":
            t["bq"] = np.zeros(H * D, np.float32)
            t["bk"] = np.zeros(Hkv * D, np.float32)
            t["bv"] = np.zeros(Hkv * D, np.float32)
        if arch == "qwen3":
            t["q_norm"] = np.ones(D, np.float32)
            t["k_norm"] = np.ones(D, np.float32)
        layers.append(t)
    return w, layers


GGUF_NAMES = {"attn_norm": "attn_norm.weight", "q": "attn_q.weight", "k": "attn_k.weight", "v": "attn_v.weight",
              "o": "attn_output.weight", "ffn_norm": "ffn_norm.weight", "gate": "ffn_gate.weight",
              "up": "ffn_up.weight", "down": "ffn_down.weight", "bq": "attn_q.bias", "bk": "attn_k.bias",
              "bv": "attn_v.bias", "q_norm": "attn_q_norm.weight", "k_norm": "attn_k_norm.weight"}
HF_NAMES = {"attn_norm": "input_layernorm.weight", "q": "self_attn.q_proj.weight", "k": "self_attn.k_proj.weight",
            "v": "self_attn.v_proj.weight", "o": "self_attn.o_proj.weight",
            "ffn_norm": "post_attention_layernorm.weight", "gate": "mlp.gate_proj.weight",
            "up": "mlp.up_proj.weight", "down": "mlp.down_proj.weight", "bq": "self_attn.q_proj.bias",
            "bk": "self_attn.k_proj.bias", "bv": "self_attn.v_proj.bias", "q_norm": "self_attn.q_norm.weight",
            "k_norm": "self_attn.k_norm.weight"}


def gguf_model(path, arch, dtype, E=16, H=2, Hkv=1, D=8, F=32, L=1, tokenizer="gpt2", llama3_freqs=False):
    import gguf
    toks = vocab() + SPECIALS
    V = len(toks)
    w, layers = micro_weights(arch, E, H, Hkv, D, F, L, V)
    wr = gguf.GGUFWriter(path, arch)
    wr.add_context_length(256)
    wr.add_embedding_length(E)
    wr.add_block_count(L)
    wr.add_feed_forward_length(F)
    wr.add_head_count(H)
    wr.add_head_count_kv(Hkv)
    wr.add_layer_norm_rms_eps(1e-6)
    wr.add_rope_freq_base(10000.0)
    if arch != "qwen2":
        wr.add_key_length(D)
        wr.add_value_length(D)
    if tokenizer == "gpt2":
        wr.add_tokenizer_model("gpt2")
        wr.add_tokenizer_pre("llama-bpe" if arch == "llama" else "qwen2")
        wr.add_token_list(toks)
        wr.add_token_types([1] * (V - 3) + [3] * 3)
        wr.add_token_merges([a + " " + b for a, b in MERGES])
        wr.add_eos_token_id(V - 1)
        wr.add_bos_token_id(V - 3)
        wr.add_add_bos_token(False)
        wr.add_chat_template("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}")

    def add(name, arr, quant=False):
        if dtype == "f16" and arr.ndim == 2:
            wr.add_tensor(name, arr.astype(np.float16))
        elif dtype == "q8_0" and arr.ndim == 2 and quant:
            q = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0)
            wr.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            wr.add_tensor(name, arr)

    add("token_embd.weight", w["embd"], True)
    add("output_norm.weight", w["norm"])
    if llama3_freqs:
        wr.add_tensor("rope_freqs.weight", np.ones(D // 2, np.float32))
    for i, t in enumerate(layers):
        for k, v in t.items():
            add("blk.%d.%s" % (i, GGUF_NAMES[k]), v, True)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def gguf_spm_vocab(path):
    import gguf
    wr = gguf.GGUFWriter(path, "llama")
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + ["▁", "a", "b", "▁a", "ab", "<sep>"]
    wr.add_tokenizer_model("llama")
    wr.add_token_list(toks)
    wr.add_token_scores([0.0] * 259 + [-1.0, -2.0, -2.0, -3.0, -4.0, 0.0])
    wr.add_token_types([2, 3, 3] + [6] * 256 + [1] * 5 + [4])
    wr.add_bos_token_id(1)
    wr.add_eos_token_id(2)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def gguf_seeds(tmp):
    cases = [("qwen2-f32.gguf", dict(arch="qwen2", dtype="f32")),
             ("qwen3-f16.gguf", dict(arch="qwen3", dtype="f16")),
             ("llama-f16-freqs.gguf", dict(arch="llama", dtype="f16", llama3_freqs=True)),
             ("qwen2-q8_0.gguf", dict(arch="qwen2", dtype="q8_0", E=32, H=4, Hkv=2, D=8, F=64)),
             ("qwen3-notok.gguf", dict(arch="qwen3", dtype="f16", tokenizer=None))]
    for name, kw in cases:
        p = os.path.join(tmp, name)
        gguf_model(p, **kw)
        put("gguf", name, open(p, "rb").read())
    p = os.path.join(tmp, "spm.gguf")
    gguf_spm_vocab(p)
    put("gguf", "spm-vocab.gguf", open(p, "rb").read())


def safetensors_bytes(tensors, dtype):
    from safetensors.numpy import save
    out = {}
    for k, v in tensors.items():
        out[k] = v.astype(np.float16) if dtype == "f16" else v
    return save(out)


def hf_seeds():
    for arch, dtype in (("qwen2", "f32"), ("qwen3", "f16"), ("llama", "f32")):
        E, H, Hkv, D, F, L = 16, 2, 1, 8, 32, 1
        V = len(vocab()) + len(SPECIALS)
        w, layers = micro_weights(arch, E, H, Hkv, D, F, L, V)
        t = {"model.embed_tokens.weight": w["embd"], "model.norm.weight": w["norm"]}
        for i, lt in enumerate(layers):
            for k, v in lt.items():
                t["model.layers.%d.%s" % (i, HF_NAMES[k])] = v
        cfg = {"architectures": [{"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                                  "llama": "LlamaForCausalLM"}[arch]],
               "hidden_size": E, "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": H,
               "num_key_value_heads": Hkv, "vocab_size": V, "max_position_embeddings": 256, "rms_norm_eps": 1e-6,
               "rope_theta": 10000.0, "tie_word_embeddings": True, "hidden_act": "silu"}
        if arch != "qwen2":
            cfg["head_dim"] = D
        if arch == "llama":
            cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 128}
        st = safetensors_bytes(t, dtype)
        put("hf_dir", "%s-%s" % (arch, dtype), json.dumps(cfg, indent=1).encode() + SEP + st)
        if arch == "qwen2":
            index = {"metadata": {"total_size": 1}, "weight_map": {k: "a.safetensors" for k in t}}
            tc = {"chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}"}
            put("hf_dir", "qwen2-index", json.dumps(cfg).encode() + SEP + st + SEP + json.dumps(index).encode() + SEP +
                json.dumps(tc).encode())


QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
            r"\s+(?!\S)|\s+")
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")


def tokenizer_json(style):
    toks = vocab()
    v = {t: i for i, t in enumerate(toks)}
    added = [{"id": len(toks) + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(SPECIALS)]
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
             "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
             "vocab": v, "merges": [a + " " + b for a, b in MERGES]}
    t = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added}
    if style == "qwen":
        t["normalizer"] = {"type": "NFC"}
        t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_RE}, "behavior": "Isolated", "invert": False}, bl]}
        t["post_processor"] = bl
    elif style == "llama3":
        added[0]["content"] = "<|begin_of_text|>"
        t["normalizer"] = None
        t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_RE}, "behavior": "Isolated", "invert": False}, bl]}
        t["post_processor"] = {"type": "Sequence", "processors": [bl, {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [],
            "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [len(toks)],
                                                    "tokens": ["<|begin_of_text|>"]}}}]}
        model["ignore_merges"] = True
        model["merges"] = [[a, b] for a, b in MERGES]
    else:  # gpt2
        t["normalizer"] = None
        t["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        t["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    t["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    t["model"] = model
    return json.dumps(t, ensure_ascii=False, indent=1).encode()


def tokenizer_seeds():
    put("tokenizer_json", "qwen", tokenizer_json("qwen"))
    put("tokenizer_json", "llama3", tokenizer_json("llama3"))
    put("tokenizer_json", "gpt2", tokenizer_json("gpt2"))
    tc = {"bos_token": None, "eos_token": "<|im_end|>", "chat_template": "{{ messages }}"}
    gc = {"bos_token_id": 256, "eos_token_id": [265, 264]}
    put("tokenizer_json", "qwen-siblings", tokenizer_json("qwen") + SEP + json.dumps(tc).encode() + SEP +
        json.dumps(gc).encode())


def tokenize_seeds():
    texts = {
        "ascii": "In the beginning God created the heaven and the earth.\n",
        "specials": "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
        "nfc": "cafe\u0301 \u212b \uff21 e\u0301\u0323 \u1e9b\u0323",
        "whitespace": "a  b\t\tc\r\n\r\n   \n\u00a0\u3000x \u2028y",
        "numbers": "1234567890 3.14159 1,000,000 -42",
        "cjk": "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \ud55c\uad6d\uc5b4 \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
        "emoji": "\U0001f600\U0001f44d\U0001f3fd \u2764\ufe0f",
        "contractions": "I'm you're they've it'll he'd DON'T",
    }
    for k, v in texts.items():
        put("tokenize", k, v)
    put("tokenize", "invalid-utf8", b"abc\xff\xfe\xc3\x28 \xe2\x82 \xf0\x9f\x98 end\x80")
    put("tokenize", "nul", b"a\x00b\x00\x00c")


def copy_configs():
    seen = set()
    for pat in ("configs/*.yaml", "configs/examples/*.yaml", "tests/config/*.yaml", "tests/config/sub/*.yaml",
                "tests/bench/*.yaml", "tests/bundled/*.yaml", "tests/gpu/deploy/*.yaml", "tests/calibrate/*deploy*.yaml",
                "tests/calibrate/two-t4.yaml", "tests/calibrate/missing-profile.yaml"):
        for p in sorted(glob.glob(os.path.join(ROOT, pat))):
            base = os.path.basename(p)
            if base in seen or base in ("catalog.yaml", "presets.yaml"):
                continue
            seen.add(base)
            put("deploy_yaml", base, open(p, "rb").read())


def numerics_seeds():
    for p in sorted(glob.glob(os.path.join(ROOT, "tests/calibrate/*numerics*.yaml"))):
        put("numerics", os.path.basename(p), open(p, "rb").read())


def plan_seeds(strata, tmp):
    runs = [["-c", "configs/what-if-m40-3050ti-f16.yaml"], ["-c", "configs/what-if-2xh100-qwen72b-bf16.yaml"],
            ["-c", "configs/examples/whatif-throughput.yaml"], ["-m", "models/tiny-kjv", "--cpu"],
            ["-c", "tests/bench/two-cpu-stages.yaml"], ["-c", "tests/calibrate/two-t4.yaml"]]
    for i, args in enumerate(runs):
        out = os.path.join(tmp, "plan%d.yaml" % i)
        r = subprocess.run([strata, "plan"] + args + ["-o", out], cwd=ROOT, capture_output=True)
        if os.path.exists(out):
            name = os.path.basename(args[1]).replace(".yaml", "") + ".plan.yaml"
            put("plan_yaml", name, open(out, "rb").read())
        elif r.returncode not in (0, 2):
            sys.exit("strata plan %s failed: %s" % (" ".join(args), r.stderr.decode()))


def chat_seeds():
    tmpl = json.load(open(os.path.join(ROOT, "models/tiny-kjv/tokenizer_config.json"))).get("chat_template", "")
    convs = {
        "qwen3-think": (3, tmpl, "qwen3", [("system", "Answer briefly."), ("user", "Hi"),
                                          ("assistant", "<think>\nhm\n</think>\n\nHello"), ("user", "Again?")]),
        "llama31": (1, "<|start_header_id|>{{ m }} Cutting Knowledge Date", "llama3.1",
                    [("system", "  be nice  "), ("user", "Who?"), ("assistant", "Me.")]),
        "tools": (1, "<|im_start|> You are Qwen, created by Alibaba Cloud", "qwen2.5",
                  [("user", "weather?"), ("assistant", "calling"), ("tool", "{\"t\": 20}"), ("tool", "ok")]),
        "reasoning": (2, "<|im_start|> enable_thinking", "qwen3",
                      [("user", "q"), ("assistant", "a\x01r1"), ("user", "q2"), ("assistant", "a2\x01r2")]),
        "none": (0, "", "none", [("user", "plain prompt")]),
        "badrole": (1, "<|im_start|>", "chatml", [("robot", "beep")]),
    }
    for name, (flags, t, kind, msgs) in convs.items():
        parts = [bytes([flags]), t.encode(), kind.encode()] + [("%s\n%s" % m).encode() for m in msgs]
        put("chat", name, SEP.join(parts))


def serve_seeds():
    """Request bodies for fuzz_serve_request: byte 0 = endpoint (bit 0: chat) and template (bits 1-3)."""
    chatml, none, qwen3, llama31 = 1 << 1, 0, 4 << 1, 6 << 1
    msgs = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Who made the heaven?"}]
    bodies = {
        "chat-min": (1 | chatml, {"messages": [{"role": "user", "content": "Hi"}]}),
        "chat-all": (1 | chatml, {"model": "tiny-kjv", "messages": msgs, "max_tokens": 24, "temperature": 0.7,
                                  "top_p": 0.9, "top_k": 40, "min_p": 0.05, "presence_penalty": 0.5,
                                  "frequency_penalty": -0.5, "repeat_penalty": 1.1, "seed": 7, "n": 1,
                                  "stop": ["\n\n", "END"], "stream": True,
                                  "stream_options": {"include_usage": True}, "ignore_eos": False,
                                  "return_token_ids": True, "logprobs": False, "tools": []}),
        "chat-parts": (1 | qwen3, {"messages": [{"role": "developer", "content": None},
                                                {"role": "user", "content": [{"type": "text", "text": "a"},
                                                                             {"type": "text", "text": "b"}]},
                                                {"role": "assistant", "content": "<think>\nx\n</think>\n\ny"}],
                                   "chat_template_kwargs": {"enable_thinking": False},
                                   "max_completion_tokens": 5}),
        "chat-none": (1 | none, {"messages": msgs, "stop": "\n"}),
        "chat-llama": (1 | llama31, {"messages": msgs, "model": "other"}),
        "chat-badrole": (1 | chatml, {"messages": [{"role": "robot", "content": "beep"}]}),
        "chat-long": (1 | chatml, {"messages": [{"role": "user", "content": "In the beginning " * 100}]}),
        "completion-text": (0, {"prompt": "In the beginning", "max_tokens": 8, "echo": True, "seed": -1}),
        "completion-ids": (0, {"prompt": [1192, 258, 2144, 385], "echo": True, "temperature": 0}),
        "completion-list": (0, {"prompt": ["In the beginning"], "suffix": None, "top_logprobs": None}),
        "completion-bad": (0, {"prompt": [[1, 2]], "temperature": "hot", "top_p": 0, "n": 2}),
        "chat-logprobs": (1 | chatml, {"messages": msgs, "logprobs": True, "top_logprobs": 3,
                                       "logit_bias": {"5": -100, "7": 2.5}, "response_format": {"type": "text"}}),
        "completion-logprobs": (0, {"prompt": [1192, 258], "logprobs": 2, "echo": True, "logit_bias": {"0": 100}}),
    }
    for name, (b0, body) in bodies.items():
        put("serve_request", name, bytes([b0]) + json.dumps(body, ensure_ascii=False).encode())
    put("serve_request", "not-json", bytes([1]) + b"{\"messages\": [\xff\xfe")
    put("serve_request", "not-object", bytes([0]) + b"[1, 2, 3]")
    put("serve_request", "utf8-role", bytes([1 | chatml]) + ('{"messages": [{"role": "' + "\u00e9" * 300 + '", "content": "x"}]}').encode())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strata", help="the strata binary (for the plan_yaml seeds)")
    a = ap.parse_args()
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        gguf_seeds(tmp)
        hf_seeds()
        tokenizer_seeds()
        tokenize_seeds()
        copy_configs()
        numerics_seeds()
        chat_seeds()
        serve_seeds()
        if a.strata:
            plan_seeds(os.path.abspath(a.strata), tmp)
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        print("%-15s %3d seeds, %7d bytes" % (t, len(files), sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in files)))


if __name__ == "__main__":
    main()
