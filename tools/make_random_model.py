#!/usr/bin/env python3
"""Write a randomly initialised Hugging Face model directory (config.json +
safetensors, written by transformers' save_pretrained) for strata's GPU
end-to-end tests (tests/gpu/e2e.sh).

    python3 tools/make_random_model.py OUT_DIR                      # Qwen2.5-7B shape, bf16, on cuda:0
    python3 tools/make_random_model.py OUT_DIR --shape tiny-4l      # 4-layer toy, f32, on the CPU

Shapes:
  qwen2.5-7b  Qwen2ForCausalLM with Qwen2.5-7B's config (hidden 3584, intermediate
              18944, 28 layers, 28 heads, 4 KV heads, vocab 152064, rope theta 1e6,
              rms eps 1e-6, untied lm_head, 32768 positions): 7.62e9 parameters,
              15.2 GB in bf16. Built directly on the GPU (seconds); the time goes
              into writing the files. No tokenizer: the tests use --tokens.
  tiny-4l     Qwen2ForCausalLM, hidden 64, intermediate 128, 4 layers, 4 heads,
              2 KV heads, vocab 256, untied, f32 (~0.7 MB): the smallest model
              that four one-layer stages can hold; with --seed 21
              the base of tests/gpu/models/tiny-4l (sharpened by
              tools/fixtures/make_peaked.py).

Weights: embedding N(0, 0.5^2), lm_head and every projection N(0, 1/in),
q/k/v biases N(0, 0.2^2), norm weights U(0.8, 1.2), like
tools/fixtures/make_fixtures.py, so activations stay at unit scale
through any depth (the residual stream grows like sqrt(layers)) and logits are
far from ties. Seeded: the same seed, device and torch version give the same
bytes.
"""
import argparse
import json
import os
import shutil
import sys
import time

SHAPES = {
    "qwen2.5-7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768,
                       rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
                       dtype="bfloat16", device="cuda"),
    "tiny-4l": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=256, max_position_embeddings=256,
                    rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
                    dtype="float32", device="cpu"),
}


def write_reference(model, out, prompt, shape):
    """reference.json as tools/fixtures/make_fixtures.py writes it (fp32, eager attention)."""
    import torch
    import transformers
    m = model.float()
    m.config._attn_implementation = "eager"
    dev = next(m.parameters()).device
    ids = torch.tensor([prompt], device=dev)
    with torch.no_grad():
        logits = m(ids).logits[0].float().cpu()
        gen = m.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False,
                         pad_token_id=0)[0, len(prompt):].tolist()
    ref = {"model": shape, "architecture": "Qwen2ForCausalLM", "generator": "tools/make_random_model.py",
           "torch": torch.__version__, "transformers": transformers.__version__, "dtype": "float32",
           "attn_implementation": "eager", "tokens": prompt, "logits": logits.tolist(),
           "greedy_prompt": prompt, "greedy_tokens": gen}
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f)


def copy_bandwidth(device):
    """Device-to-device copy of 1 GiB (random data), GB/s counting bytes read + written."""
    import torch
    n = 1 << 30
    src = torch.randint(0, 255, (n,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = []
    for _ in range(20):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        dst.copy_(src)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    times.sort()
    del src, dst
    torch.cuda.empty_cache()
    return 2 * n / times[len(times) // 2] / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output directory (replaced if it exists)")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-7b")
    ap.add_argument("--device", help="where to build the weights (default: cuda for qwen2.5-7b, cpu for tiny-4l)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--shard", default="5GB", help="max_shard_size for save_pretrained (default 5GB)")
    ap.add_argument("--copy-bw", action="store_true",
                    help="also measure the GPU's device-to-device copy bandwidth (GB/s, bytes read + written; "
                         "median of 20 copies of 1 GiB, CUDA events) and report it as copy_gbps")
    ap.add_argument("--reference", metavar="IDS",
                    help="also write reference.json like the fixtures' (transformers fp32 eager: 'tokens', 'logits' "
                         "of the prompt, 'greedy_tokens' = 16 new ids), for this comma-separated prompt")
    args = ap.parse_args()

    t0 = time.time()
    import torch
    import transformers
    from transformers import Qwen2Config, Qwen2ForCausalLM

    spec = dict(SHAPES[args.shape])
    dtype = getattr(torch, spec.pop("dtype"))
    device = args.device or spec.pop("device")
    spec.pop("device", None)
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"make_random_model: --device {device} but torch sees no GPU (use --device cpu, slow for 7B)")
    theta = spec.pop("rope_theta")
    cfg = Qwen2Config(**spec, hidden_act="silu", attention_dropout=0.0, use_cache=True, initializer_range=0.02,
                      bos_token_id=None, eos_token_id=None, pad_token_id=None, use_sliding_window=False)
    # transformers 5 keeps the RoPE base in rope_parameters; 4.x in rope_theta. Set both.
    cfg.rope_theta = theta
    rp = getattr(cfg, "rope_parameters", None)
    if isinstance(rp, dict):
        rp["rope_theta"] = theta
        rp.setdefault("rope_type", "default")
    cfg.architectures = ["Qwen2ForCausalLM"]

    torch.manual_seed(args.seed)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(cfg)
    finally:
        torch.set_default_dtype(prev)
    model.eval()
    g = torch.Generator(device=device).manual_seed(args.seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("embed_tokens.weight"):
                p.normal_(0.0, 0.5, generator=g)
            elif name.endswith("norm.weight"):
                p.uniform_(0.8, 1.2, generator=g)
            elif name.endswith(".bias"):
                p.normal_(0.0, 0.2, generator=g)
            elif p.dim() == 2:
                p.normal_(0.0, p.shape[1] ** -0.5, generator=g)
            else:
                sys.exit(f"make_random_model: no init rule for {name} {tuple(p.shape)}")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t_build = time.time() - t0
    n_params = sum(p.numel() for p in model.parameters())

    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    t1 = time.time()
    try:
        model.save_pretrained(args.out, safe_serialization=True, max_shard_size=args.shard)
    except TypeError:  # a transformers without the safe_serialization switch (always safetensors)
        model.save_pretrained(args.out, max_shard_size=args.shard)
    t_save = time.time() - t1
    if args.reference:
        write_reference(model, args.out, [int(t) for t in args.reference.split(",")], args.shape)
    copy_gbps = copy_bandwidth(device) if args.copy_bw and device.startswith("cuda") else None
    files = sorted(f for f in os.listdir(args.out) if f.endswith(".safetensors"))
    size = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    info = {"shape": args.shape, "out": args.out, "params": n_params, "dtype": str(dtype).replace("torch.", ""),
            "device": device, "seed": args.seed, "files": len(files), "bytes": size,
            "build_s": round(t_build, 2), "save_s": round(t_save, 2), "total_s": round(time.time() - t0, 2),
            "torch": torch.__version__, "transformers": transformers.__version__}
    if copy_gbps is not None:
        info["copy_gbps"] = round(copy_gbps, 1)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
