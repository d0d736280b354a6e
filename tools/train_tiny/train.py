#!/usr/bin/env python3
"""Train strata's bundled tiny model: a byte-level BPE tokenizer plus a Qwen3ForCausalLM on the
prepared KJV text (tools/train_tiny/prepare_data.py), then write a Hugging Face directory.

Runs offline on one GPU (or, slowly and at toy sizes, on the CPU):

    python3 tools/train_tiny/train.py --data .train_data/kjv --out OUT_DIR [--budget-s 360]

Writes into OUT_DIR exactly seven files:
    model.safetensors  config.json  generation_config.json  tokenizer.json  tokenizer_config.json
    train_log.txt      eval.json

Steps
 1. Tokenizer: BPE trained with HF `tokenizers` on train.txt. NFC normalizer; pre-tokenizer =
    Split(Qwen2 regex, isolated) then ByteLevel(add_prefix_space=false, use_regex=false); ByteLevel
    decoder and post-processor -- the same pipeline as Qwen2/Qwen3's tokenizer.json, so strata's Qwen
    tokenizer path handles it unchanged. Special tokens <|endoftext|>, <|im_start|>, <|im_end|> are
    added after the BPE vocabulary (the last three ids), as in Qwen.
 2. Corpus -> ids: each split file is encoded as ONE string (no BOS/EOS, no special tokens).
 3. Model: Qwen3ForCausalLM, tied embeddings, trained from fp32 master weights under bf16 autocast
    with AdamW (betas 0.9/0.95, weight decay on matrices), linear warm-up + cosine decay to 10%,
    random windows of --ctx tokens, residual + embedding dropout added by forward hooks during
    training only (the architecture and the saved weights are plain Qwen3). The corpus is small
    (~1M tokens) so training is data-limited, not compute-limited: instead of one long run the
    script runs a small grid of (epochs, dropout, peak lr) candidates inside the wall-clock budget,
    evaluates the valid split every half epoch, and keeps the weights with the lowest valid loss.
    Candidates that would not fit the remaining budget are skipped; the test split is never used
    for any choice.
 4. Saves the chosen weights as F16 safetensors (see README: size budget), config, generation
    config (default sampling settings), tokenizer files.
 5. Reloads the saved directory with transformers in float32 (TF32 off, eager attention) and
    measures held-out perplexity with this fixed windowing, which strata reproduces exactly:
      - ids = tokenizer.encode(test.txt as one string), no BOS/EOS, no special-token parsing;
      - n_windows = len(ids) // W (W = --eval-window, default 512); the tail is dropped;
      - window k = ids[k*W : (k+1)*W], scored independently (fresh context, positions 0..W-1);
      - every position t = 1..W-1 of a window is scored: -log softmax(logits[t-1])[ids[t]];
      - perplexity = exp(sum of all scored NLLs / (n_windows * (W-1))).
    eval.json also gives the same number over only the first --eval-prefix-windows windows
    (>= 20k scored tokens) so a CPU check can be shorter, and the per-window NLL sums.
 6. Greedy and sampled continuations of a few prompts in the corpus's style, with their ids.
"""
import argparse
import hashlib
import inspect
import json
import math
import os
import platform
import random
import sys
import time

T_START = time.time()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import tokenizers  # noqa: E402
import transformers  # noqa: E402
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,  # noqa: E402
                        pre_tokenizers, processors, trainers)
from transformers import (AutoModelForCausalLM, AutoTokenizer, GenerationConfig,  # noqa: E402
                          Qwen3Config, Qwen3ForCausalLM)

# formats.md 5.2, exactly as stored in Qwen2/Qwen3 tokenizer.json
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
PROMPTS = [
    "In the beginning",
    "And the LORD spake unto Moses, saying,",
    "Blessed are the",
    "Psalms 151\n",
]
# (epochs, dropout, peak lr), in priority order: later ones are skipped if the budget runs out
DEFAULT_GRID = "48:0.2:2e-3,24:0.1:2e-3,96:0.3:2e-3,48:0.2:4e-3,12:0.0:2e-3,48:0.2:1e-3"


class Log:
    def __init__(self, path):
        self.f = open(path, "w", encoding="utf-8")

    def __call__(self, msg):
        line = f"[{time.time() - T_START:7.1f}s] {msg}"
        print(line, flush=True)
        self.f.write(line + "\n")
        self.f.flush()


def die(msg, hint):
    sys.stderr.write(f"train.py: error: {msg}\nhint: {hint}\n")
    sys.exit(1)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# tokenizer

def train_tokenizer(train_text, vocab_size):
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                              use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIALS), min_frequency=2,
                                  show_progress=False, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    chapters = [c for c in train_text.split("\n\n") if c]
    tok.train_from_iterator(chapters, trainer=trainer, length=len(chapters))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False, lstrip=False,
                                       rstrip=False, single_word=False) for s in SPECIALS])
    # Make the JSON read exactly like Qwen's: the Rust ByteLevel decoder ignores its options, the
    # Python binding does not take them, so set them in the serialised form.
    j = json.loads(tok.to_str())
    j["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                    "use_regex": False}
    return Tokenizer.from_str(json.dumps(j, ensure_ascii=False))


def tokenizer_config(max_len):
    added = {}
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_len,
        "bos_token": None,
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "errors": "replace",
        "added_tokens_decoder": added,
    }


# ---------------------------------------------------------------------------------------------
# model

def make_config(a, vocab_size, eos_id):
    kw = dict(vocab_size=vocab_size, hidden_size=a.hidden, intermediate_size=a.ff,
              num_hidden_layers=a.layers, num_attention_heads=a.heads,
              num_key_value_heads=a.kv_heads, head_dim=a.head_dim,
              max_position_embeddings=a.max_pos, rms_norm_eps=1e-6, tie_word_embeddings=True,
              hidden_act="silu", attention_bias=False, use_sliding_window=False,
              attention_dropout=0.0, initializer_range=0.02,
              bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id)
    params = inspect.signature(Qwen3Config.__init__).parameters
    if "rope_parameters" in params:  # transformers >= 5
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": a.rope_theta}
    else:
        kw["rope_theta"] = a.rope_theta
    return Qwen3Config(**kw)


def add_dropout_hooks(model, p):
    def hook(mod, inp, out):
        if not mod.training or p <= 0:
            return None
        if isinstance(out, tuple):
            return (F.dropout(out[0], p, True),) + tuple(out[1:])
        return F.dropout(out, p, True)
    hs = [model.model.embed_tokens.register_forward_hook(hook)]
    for layer in model.model.layers:
        hs.append(layer.self_attn.register_forward_hook(hook))
        hs.append(layer.mlp.register_forward_hook(hook))
    return hs


def window_nll(model, ids, window, max_windows=None, batch=16, autocast=None):
    """Per-window sums of NLL (float64) with the documented windowing (see module docstring)."""
    n = len(ids) // window
    if max_windows is not None:
        n = min(n, max_windows)
    w = ids[: n * window].view(n, window)
    out = []
    model.eval()
    with torch.no_grad():
        for i in range(0, n, batch):
            x = w[i:i + batch]
            if autocast is not None:
                with torch.autocast(device_type=x.device.type, dtype=autocast):
                    logits = model(input_ids=x).logits
            else:
                logits = model(input_ids=x).logits
            lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            nll = -lp.gather(-1, x[:, 1:, None]).squeeze(-1)
            out.extend(nll.double().sum(dim=1).tolist())
    return out


def train_candidate(a, cfg, cand, train_ids, valid_ids, dev, log, deadline):
    epochs, dropout, lr = cand
    torch.manual_seed(a.seed)
    model = Qwen3ForCausalLM(cfg).to(dev)
    hooks = add_dropout_hooks(model, dropout)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95), eps=1e-8,
                            **({"fused": True} if dev.type == "cuda" else {}))
    tok_per_step = a.batch * a.ctx
    steps_per_epoch = max(1, len(train_ids) // tok_per_step)
    total = max(1, int(round(epochs * len(train_ids) / tok_per_step)))
    warm = min(a.warmup, max(1, total // 10))
    eval_every = a.eval_every or max(1, steps_per_epoch // 2)

    def lr_at(s):
        if s < warm:
            return lr * (s + 1) / warm
        q = (s - warm) / max(1, total - warm)
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, q))))

    gen = torch.Generator(device="cpu").manual_seed(a.seed + 1)
    span = torch.arange(a.ctx + 1, device=dev)
    amp = a.amp_dtype
    best = {"loss": float("inf"), "state": None, "step": -1}
    curve = []
    t0 = time.time()
    t_eval = 0.0
    s = 0
    cut = False
    log(f"candidate epochs={epochs} dropout={dropout} lr={lr}: {total} steps of {tok_per_step} "
        f"tokens ({steps_per_epoch} per epoch), warm-up {warm}, eval every {eval_every}")
    while s < total:
        model.train()
        for g in opt.param_groups:
            g["lr"] = lr_at(s)
        ix = torch.randint(0, len(train_ids) - a.ctx - 1, (a.batch,), generator=gen).to(dev)
        chunk = train_ids[ix[:, None] + span]
        x, y = chunk[:, :-1], chunk[:, 1:]
        if amp is not None:
            with torch.autocast(device_type=dev.type, dtype=amp):
                logits = model(input_ids=x).logits
        else:
            logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        s += 1
        last = s == total or time.time() > deadline
        if s % a.log_every == 0 or s == 1 or last:
            log(f"  step {s}/{total} epoch {s / steps_per_epoch:.2f} loss {loss.item():.4f} "
                f"gnorm {gnorm.item():.3f} lr {lr_at(s - 1):.2e} "
                f"({(time.time() - t0 - t_eval) / s * 1000:.1f} ms/step)")
        if s % eval_every == 0 or last:
            te = time.time()
            sums = window_nll(model, valid_ids, a.eval_window, autocast=amp, batch=a.eval_batch)
            vl = sum(sums) / (len(sums) * (a.eval_window - 1))
            t_eval += time.time() - te
            curve.append((s, round(s / steps_per_epoch, 3), vl))
            mark = ""
            if vl < best["loss"]:
                best = {"loss": vl, "step": s,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
                mark = " *"
            log(f"  valid step {s} epoch {s / steps_per_epoch:.2f} loss {vl:.4f} "
                f"ppl {math.exp(vl):.3f}{mark}")
        if time.time() > deadline and s < total:
            cut = True
            log(f"  budget reached at step {s}/{total}: candidate cut short")
            break
    for h in hooks:
        h.remove()
    train_s = time.time() - t0
    step_ms = (train_s - t_eval) / max(1, s) * 1000
    res = {"epochs": epochs, "dropout": dropout, "lr": lr, "steps": s, "planned_steps": total,
           "cut_short": cut, "best_valid_loss": best["loss"], "best_step": best["step"],
           "best_epoch": round(best["step"] / steps_per_epoch, 3), "seconds": round(train_s, 1),
           "ms_per_step": round(step_ms, 2), "eval_seconds": round(t_eval, 1), "curve": curve}
    return res, best["state"], model


# ---------------------------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", default=".train_data/kjv", help="folder with train/valid/test.txt")
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--name", default="tiny-kjv", help="model name recorded in eval.json")
    ap.add_argument("--budget-s", type=float, default=360.0,
                    help="wall-clock seconds for the training grid (tokenizer, eval and saving "
                         "come on top)")
    ap.add_argument("--vocab", type=int, default=4096, help="total vocabulary incl. 3 specials")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--ff", type=int, default=768)
    ap.add_argument("--max-pos", type=int, default=1024)
    ap.add_argument("--rope-theta", type=float, default=1e6)
    ap.add_argument("--ctx", type=int, default=1024, help="training sequence length")
    ap.add_argument("--batch", type=int, default=16, help="sequences per step")
    ap.add_argument("--grid", default=DEFAULT_GRID,
                    help="comma-separated epochs:dropout:lr candidates, in priority order")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--eval-window", type=int, default=512)
    ap.add_argument("--eval-prefix-windows", type=int, default=40,
                    help="also report perplexity over only the first N test windows")
    ap.add_argument("--eval-every", type=int, default=0, help="steps; 0 = every half epoch")
    ap.add_argument("--eval-batch", type=int, default=16)
    ap.add_argument("--log-every", type=int, default=200)
    ap.add_argument("--gen-tokens", type=int, default=64, help="greedy continuation length")
    ap.add_argument("--sample-tokens", type=int, default=96, help="sampled continuation length")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--no-amp", dest="amp", action="store_false",
                    help="train in fp32 instead of bf16 autocast (CUDA only)")
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto")
    ap.add_argument("--max-bytes", type=int, default=20_000_000,
                    help="fail if the HF dir + the GGUF to_gguf.py will make exceed this")
    a = ap.parse_args()
    try:
        a.candidates = []
        for item in a.grid.split(","):
            e, d, l = item.split(":")
            a.candidates.append((float(e), float(d), float(l)))
    except ValueError:
        die(f"--grid {a.grid!r}: expected comma-separated epochs:dropout:lr, e.g. 48:0.2:2e-3",
            "see --help")
    if a.heads % a.kv_heads:
        die(f"--heads {a.heads} is not a multiple of --kv-heads {a.kv_heads}", "GQA needs H % Hkv == 0")
    if a.ctx > a.max_pos or a.eval_window > a.max_pos:
        die(f"--ctx {a.ctx} / --eval-window {a.eval_window} exceed --max-pos {a.max_pos}",
            "raise --max-pos or shorten the windows")
    return a


def main():
    a = parse_args()
    for f in ("train.txt", "valid.txt", "test.txt"):
        if not os.path.isfile(os.path.join(a.data, f)):
            die(f"{os.path.join(a.data, f)}: no such file",
                "run tools/train_tiny/prepare_data.py first and carry its folder to this machine")
    os.makedirs(a.out, exist_ok=True)
    log = Log(os.path.join(a.out, "train_log.txt"))
    if a.device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(a.device)
    a.amp_dtype = torch.bfloat16 if (a.amp and dev.type == "cuda") else None
    random.seed(a.seed)
    torch.manual_seed(a.seed)
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
           "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
           or "cpu"}
    log(f"env {json.dumps(env)}")
    log(f"args {json.dumps({k: v for k, v in vars(a).items() if k != 'candidates'}, default=str)}")

    texts = {}
    data_files = {}
    for split in ("train", "valid", "test"):
        p = os.path.join(a.data, f"{split}.txt")
        with open(p, "rb") as f:
            raw = f.read()
        try:
            texts[split] = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            die(f"{p}: invalid UTF-8 at byte offset {e.start}", "re-run prepare_data.py")
        data_files[f"{split}.txt"] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    meta_path = os.path.join(a.data, "meta.json")
    data_meta = json.load(open(meta_path)) if os.path.isfile(meta_path) else None

    # 1. tokenizer
    t = time.time()
    tok = train_tokenizer(texts["train"], a.vocab)
    V = tok.get_vocab_size(with_added_tokens=True)
    eos_id = tok.token_to_id("<|endoftext|>")
    log(f"tokenizer: {V} tokens (BPE {V - len(SPECIALS)} + {len(SPECIALS)} special), "
        f"eos/bos/pad id {eos_id}, trained in {time.time() - t:.1f}s")
    tok.save(os.path.join(a.out, "tokenizer.json"))
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        tc = tokenizer_config(a.max_pos)
        for s in SPECIALS:
            tc["added_tokens_decoder"][str(tok.token_to_id(s))] = {
                "content": s, "lstrip": False, "normalized": False, "rstrip": False,
                "single_word": False, "special": True}
        json.dump(tc, f, indent=2, ensure_ascii=False)
        f.write("\n")

    # 2. ids
    t = time.time()
    ids = {k: torch.tensor(tok.encode(v, add_special_tokens=False).ids, dtype=torch.long)
           for k, v in texts.items()}
    for k, v in ids.items():
        log(f"{k}: {len(v)} tokens ({data_files[k + '.txt']['bytes'] / len(v):.2f} bytes/token)")
    log(f"encoded in {time.time() - t:.1f}s")
    n_test_windows = len(ids["test"]) // a.eval_window
    if n_test_windows * (a.eval_window - 1) < 20000:
        log(f"WARNING: test split scores only {n_test_windows * (a.eval_window - 1)} tokens (< 20000)")
    train_ids = ids["train"].to(dev)
    valid_ids = ids["valid"].to(dev)
    test_ids = ids["test"].to(dev)

    # 3. train the grid
    cfg = make_config(a, V, eos_id)
    n_params = sum(p.numel() for p in Qwen3ForCausalLM(cfg).parameters())
    log(f"model: Qwen3 hidden {a.hidden}, layers {a.layers}, heads {a.heads}/{a.kv_heads} kv, "
        f"head_dim {a.head_dim}, ff {a.ff}, vocab {V}, tied: {n_params} parameters "
        f"({n_params * 2 / 1e6:.2f} MB in F16)")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    t_grid = time.time()
    deadline = t_grid + a.budget_s
    results = []
    best_state, best_loss, best_i = None, float("inf"), -1
    step_ms = None
    for i, cand in enumerate(a.candidates):
        left = deadline - time.time()
        if step_ms is not None:
            need = cand[0] * len(train_ids) / (a.batch * a.ctx) * step_ms / 1000 * 1.15
            if need > left:
                log(f"skip candidate {cand}: needs ~{need:.0f}s, {left:.0f}s left")
                results.append({"epochs": cand[0], "dropout": cand[1], "lr": cand[2],
                                "skipped": True, "estimated_seconds": round(need, 1)})
                continue
        if left <= 0:
            results.append({"epochs": cand[0], "dropout": cand[1], "lr": cand[2], "skipped": True})
            continue
        res, state, _ = train_candidate(a, cfg, cand, train_ids, valid_ids, dev, log, deadline)
        step_ms = res["ms_per_step"] * (1 + res["eval_seconds"] / max(1e-9, res["seconds"] -
                                                                      res["eval_seconds"]))
        results.append(res)
        log(f"candidate {cand}: best valid loss {res['best_valid_loss']:.4f} "
            f"(ppl {math.exp(res['best_valid_loss']):.3f}) at epoch {res['best_epoch']}, "
            f"{res['seconds']}s")
        if state is not None and res["best_valid_loss"] < best_loss:
            best_state, best_loss, best_i = state, res["best_valid_loss"], i
    if best_state is None:
        die("no candidate finished a single evaluation", "raise --budget-s")
    chosen = a.candidates[best_i]
    log(f"chosen candidate {chosen}: valid loss {best_loss:.4f} (ppl {math.exp(best_loss):.3f}); "
        f"grid took {time.time() - t_grid:.0f}s")

    # 4. save
    model = Qwen3ForCausalLM(cfg)
    model.load_state_dict({k: v.float().cpu() for k, v in best_state.items()})
    mx = max(p.detach().abs().max().item() for p in model.parameters())
    tiny = sum(((p.detach() != 0) & (p.detach().abs() < 6.1e-5)).sum().item()
               for p in model.parameters())
    log(f"max |weight| {mx:.4f}; {tiny} nonzero weights below the F16 normal range")
    if mx > 60000:
        die(f"a weight of magnitude {mx} does not fit F16", "save in BF16 instead")
    model.generation_config = GenerationConfig(
        bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id, do_sample=True,
        temperature=0.8, top_k=40, top_p=0.95, max_new_tokens=256)
    model.half().save_pretrained(a.out)
    cpath = os.path.join(a.out, "config.json")
    c = json.load(open(cpath))
    c.setdefault("rope_theta", a.rope_theta)  # also the pre-v5 key, for older readers
    with open(cpath, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")
    extra = set(os.listdir(a.out)) - {"model.safetensors", "config.json", "generation_config.json",
                                      "tokenizer.json", "tokenizer_config.json", "train_log.txt"}
    if extra:
        log(f"WARNING: unexpected files in {a.out}: {sorted(extra)}")
    del model, best_state

    # 5. reload and evaluate in fp32
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.set_float32_matmul_precision("highest")
    hf_tok = AutoTokenizer.from_pretrained(a.out)
    probe = texts["test"][:2000]
    if hf_tok(probe, add_special_tokens=False)["input_ids"] != tok.encode(probe).ids:
        die("AutoTokenizer and the trained tokenizer disagree on test text",
            "check tokenizer_config.json against this transformers version")
    model = AutoModelForCausalLM.from_pretrained(a.out, dtype=torch.float32,
                                                 attn_implementation="eager").to(dev).eval()
    t = time.time()
    ev = {}
    for split, sid in (("test", test_ids), ("valid", valid_ids)):
        sums = window_nll(model, sid, a.eval_window, batch=a.eval_batch)
        n_tok = len(sums) * (a.eval_window - 1)
        ev[split] = {"tokens_total": len(sid), "windows": len(sums), "tokens_scored": n_tok,
                     "nll_mean": sum(sums) / n_tok, "perplexity": math.exp(sum(sums) / n_tok)}
        if split == "test":
            k = min(a.eval_prefix_windows, len(sums))
            pre = sum(sums[:k]) / (k * (a.eval_window - 1))
            ev[split]["prefix"] = {"windows": k, "tokens_scored": k * (a.eval_window - 1),
                                   "nll_mean": pre, "perplexity": math.exp(pre)}
            ev[split]["window_nll_sums"] = [round(x, 6) for x in sums]
        log(f"{split} perplexity (fp32, saved F16 weights): {ev[split]['perplexity']:.4f} over "
            f"{n_tok} tokens in {len(sums)} windows of {a.eval_window}")
    log(f"test prefix perplexity ({ev['test']['prefix']['windows']} windows, "
        f"{ev['test']['prefix']['tokens_scored']} tokens): {ev['test']['prefix']['perplexity']:.4f}"
        f"; eval took {time.time() - t:.1f}s")

    # 6. generations
    gens = []
    for i, prompt in enumerate(PROMPTS):
        pid = hf_tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(dev)
        with torch.no_grad():
            g = model.generate(pid, max_new_tokens=a.gen_tokens, do_sample=False, top_k=None,
                               top_p=None, temperature=None)
            torch.manual_seed(a.seed + i)
            smp = model.generate(pid, max_new_tokens=a.sample_tokens)
        g_new = g[0, pid.shape[1]:].tolist()
        s_new = smp[0, pid.shape[1]:].tolist()
        gens.append({"prompt": prompt, "prompt_ids": pid[0].tolist(),
                     "greedy_ids": g_new, "greedy_text": hf_tok.decode(g_new),
                     "sample_seed": a.seed + i, "sample_text": hf_tok.decode(s_new)})
        log(f"prompt {prompt!r}\n  greedy: {hf_tok.decode(g_new)!r}\n  "
            f"sample: {hf_tok.decode(s_new)!r}")

    sizes = {f: os.path.getsize(os.path.join(a.out, f)) for f in sorted(os.listdir(a.out))}
    st_bytes = sizes.get("model.safetensors", 0)
    est_total = sum(sizes.values()) + st_bytes + 64 * V + 32 * 1024  # + GGUF (weights + vocab)
    log(f"files: {json.dumps(sizes)}; estimated models/ total with GGUF {est_total / 1e6:.2f} MB")
    report = {
        "name": a.name,
        "env": env,
        "data": {"folder_meta": data_meta, "files": data_files},
        "tokenizer": {"vocab_size": V, "bpe_tokens": V - len(SPECIALS), "specials": {
            s: tok.token_to_id(s) for s in SPECIALS}, "pre_tokenizer": "qwen2 Split + ByteLevel",
            "normalizer": "NFC"},
        "model": {"parameters": n_params, "dtype": "float16", "hidden": a.hidden,
                  "layers": a.layers, "heads": a.heads, "kv_heads": a.kv_heads,
                  "head_dim": a.head_dim, "ff": a.ff, "rope_theta": a.rope_theta,
                  "max_position_embeddings": a.max_pos, "tied_embeddings": True},
        "training": {"ctx": a.ctx, "batch": a.batch, "tokens_per_step": a.ctx * a.batch,
                     "train_tokens": len(ids["train"]), "budget_s": a.budget_s,
                     "optimizer": f"AdamW betas 0.9/0.95 wd {a.weight_decay} (matrices), "
                                  f"clip {a.clip}, warm-up {a.warmup} + cosine to 10%",
                     "amp": "bf16 autocast" if (a.amp and dev.type == "cuda") else "fp32",
                     "candidates": results, "chosen": {"epochs": chosen[0], "dropout": chosen[1],
                                                       "lr": chosen[2], "valid_loss": best_loss}},
        "eval": {"windowing": (
            f"ids = encode(<split>.txt as one string), no BOS/EOS, no special-token parsing; "
            f"windows of {a.eval_window} non-overlapping tokens from id 0, tail dropped; each "
            f"window scored independently, positions 1..{a.eval_window - 1} (NLL of ids[t] given "
            f"ids[0..t-1] of the same window); ppl = exp(mean NLL)"),
            "window": a.eval_window, "precision": "transformers float32, eager attention, TF32 "
            "off, weights = saved F16 upcast", **ev},
        "generation_defaults": {"do_sample": True, "temperature": 0.8, "top_k": 40,
                                "top_p": 0.95},
        "generations": gens,
        "files": sizes,
        "seconds_total": round(time.time() - T_START, 1),
    }
    with open(os.path.join(a.out, "eval.json"), "w") as f:
        json.dump(report, f, indent=1, ensure_ascii=False)
        f.write("\n")
    log(f"done in {time.time() - T_START:.0f}s")
    if est_total > a.max_bytes:
        die(f"HF dir + GGUF would take ~{est_total} bytes > --max-bytes {a.max_bytes}",
            "shrink the model (--layers/--ff/--vocab)")


if __name__ == "__main__":
    main()
