#!/usr/bin/env python3
"""The table of bench/gpu_compare.sh: every figure of strata and llama.cpp on
the same GPU and weights, with its ratio against the issues' targets.

  gpu_compare_report.py QC_DIR COMMIT     writes QC_DIR/results.json and table.txt, prints the table
  gpu_compare_report.py --selftest        the verdicts on made-up numbers (a missed target is MISS)

A figure whose files are missing is reported as missing (and is not a PASS).
"""
import json
import os
import sys

# Qwen2.5-7B: 28 layers x (K, V) x 4 KV heads x 128 x 2 bytes (bf16 KV cache) per token of context
KV_BYTES_PER_TOKEN = 28 * 2 * 4 * 128 * 2


def load(path):
    try:
        if path.endswith(".jsonl"):
            return [json.loads(l) for l in open(path) if l.strip().startswith("{")]
        return json.load(open(path))
    except (OSError, ValueError):
        return None


def llama_ts(rows, n_prompt, n_gen, depth=0):
    for r in rows or []:
        if r.get("n_prompt") == n_prompt and r.get("n_gen") == n_gen and r.get("n_depth", 0) == depth:
            return float(r["avg_ts"])
    return None


def build(qc):
    """Rows: (figure, strata, reference, ratio, target, verdict)."""
    S = lambda n: load(f"{qc}/strata-{n}.json")
    L = lambda n: load(f"{qc}/llama-{n}.json")
    rows = []

    def row(name, value, ref, target, unit, ratio=None, ref_name=""):
        if value is None or (ref is None and target is not None and ratio is None):
            rows.append({"figure": name, "verdict": "missing", "unit": unit})
            return
        r = ratio if ratio is not None else (value / ref if ref else None)
        verdict = "info" if target is None else ("PASS" if r is not None and r >= target else "MISS")
        rows.append({"figure": name, "strata": value, "reference": ref, "reference_name": ref_name, "ratio": r,
                     "target": target, "verdict": verdict, "unit": unit})

    peak512 = (load(f"{qc}/gemm-512.json") or {}).get("tflops")
    peak4k = (load(f"{qc}/gemm-4096.json") or {}).get("tflops")
    for t, tg_target in (("BF16", 1.15), ("Q4_K_M", 1.3), ("Q8_0", 1.2)):
        s, l = S(t), L(t)
        sd = s and s.get("decode_tok_s")
        sp = s and s.get("prefill_tok_s")
        row(f"{t} decode tg128 vs llama.cpp", sd, llama_ts(l, 0, 128), tg_target, "tok/s", ref_name="llama-bench tg128")
        row(f"{t} prefill pp512 vs llama.cpp", sp, llama_ts(l, 512, 0), 1.3 if t == "BF16" else 1.0, "tok/s",
            ref_name="llama-bench pp512")
        frac = s and (s.get("roofline") or {}).get("fraction")
        row(f"{t} decode vs copy roofline", frac, None, 0.95 if t == "BF16" else None, "fraction", ratio=frac)
        if t == "BF16" and s and peak512:
            wb = (s.get("roofline") or {}).get("weight_bytes_per_token")
            params = wb / 2 if wb else None   # bf16 weights: 2 bytes each
            if params and sp:
                tfl = 2.0 * params * sp / 1e12
                row("BF16 prefill 512 vs cuBLAS bf16 GEMM peak", tfl, peak512, 0.70, "TFLOP/s", ref_name="gpu_gemm_peak 512x18944x3584")
    s4, s8 = S("BF16-4k"), S("BF16-8k")
    row("BF16 prefill 4096 vs llama.cpp", s4 and s4.get("prefill_tok_s"), llama_ts(L("BF16-4k"), 4096, 0), 1.3, "tok/s",
        ref_name="llama-bench pp4096")
    if s4 and peak4k and (s4.get("roofline") or {}).get("weight_bytes_per_token"):
        tfl = 2.0 * s4["roofline"]["weight_bytes_per_token"] / 2 * s4["prefill_tok_s"] / 1e12
        row("BF16 prefill 4096 vs cuBLAS bf16 GEMM peak", tfl, peak4k, 0.70, "TFLOP/s", ref_name="gpu_gemm_peak 4096x18944x3584")
    row("BF16 decode after 8k tokens vs llama.cpp", s8 and s8.get("decode_tok_s"), llama_ts(L("BF16-8k"), 0, 128, 8192),
        1.15, "tok/s", ref_name="llama-bench tg128 -d 8192")
    if s8 and s8.get("decode_tok_s") and s8.get("devices"):
        copy = s8["devices"][0].get("copy_gbps")
        wb = (s8.get("roofline") or {}).get("weight_bytes_per_token")
        if copy and wb:
            ctx = 8192 + 64   # the mean context over the 128 decoded tokens
            roof = copy * 1e9 / (wb + ctx * KV_BYTES_PER_TOKEN)
            row("BF16 decode after 8k vs roofline (weights + KV read)", s8["decode_tok_s"] / roof, None, 0.95, "fraction",
                ratio=s8["decode_tok_s"] / roof)
    s1, s2 = S("BF16"), S("BF16-2stages")
    row("two logical stages: decode vs one stage", s2 and s2.get("decode_tok_s"), s1 and s1.get("decode_tok_s"), 0.98,
        "tok/s", ref_name="one stage")
    for t in ("BF16", "Q4_K_M"):   # issue 14's model is the bf16 one; issue 11's what-if deployment runs Q4_K_M
        m = S(f"M40-{t}")
        frac = m and (m.get("roofline") or {}).get("fraction")
        row(f"Maxwell path (emulate: tesla-m40) {t} decode vs copy roofline", frac, None, 0.80, "fraction", ratio=frac)
    for n in ("BF16", "Q4_K_M", "Q8_0"):
        s = S(n)
        for st in ((s or {}).get("load") or {}).get("stages", []):
            row(f"{n} weight load vs host-to-device copy", st.get("gbps"), st.get("h2d_gbps"), None, "GB/s",
                ref_name="cudaMemcpy pinned H2D")
        if s and (s.get("load") or {}).get("ttft_s") is not None:
            row(f"{n} time to first token (load + 512 prefill)", s["load"]["ttft_s"], None, None, "s")
    c1, c2 = load(f"{qc}/strata-conc.json"), load(f"{qc}/strata-conc-2stages.json")
    lb = load(f"{qc}/llama-batched.jsonl")
    agg = lambda c, n: next((r["aggregate_decode_tok_s"] for r in (c or {}).get("runs", []) if r["concurrency"] == n), None)
    lagg = lambda n: next((float(r["speed_tg"]) for r in lb or [] if r.get("pl") == n), None)
    one = agg(c1, 1)
    for n in (1, 4, 16, 64):
        row(f"serving {n} sequences: aggregate decode vs llama-batched-bench", agg(c1, n), lagg(n),
            1.3 if n in (16, 64) else None, "tok/s", ref_name="llama-batched-bench speed_tg")
    row("serving 16 sequences vs 1 (aggregate)", agg(c1, 16), one, 8.0, "tok/s", ref_name="1 sequence")
    for n in (16, 64):
        row(f"two logical stages (throughput), {n} sequences vs one stage", agg(c2, n), agg(c1, n), 0.90, "tok/s",
            ref_name="one stage")
    return rows


def render(rows, gpu, commit):
    lines = [f"strata vs llama.cpp on {gpu}, commit {commit} (ratio = strata / reference)",
             f"{'figure':66s} {'strata':>10s} {'reference':>10s} {'ratio':>6s} {'target':>6s}  verdict"]
    for r in rows:
        if r["verdict"] == "missing":
            lines.append(f"{r['figure']:66s} {'':>10s} {'':>10s} {'':>6s} {'':>6s}  missing")
            continue
        f = lambda v: "" if v is None else (f"{v:10.3f}" if abs(v) < 10 else f"{v:10.1f}")
        lines.append(f"{r['figure']:66s} {f(r['strata'])} {f(r['reference'])} "
                     f"{'' if r['ratio'] is None else format(r['ratio'], '6.3f'):>6s} "
                     f"{'' if r['target'] is None else format(r['target'], '6.2f'):>6s}  {r['verdict']}")
    n_miss = sum(r["verdict"] in ("MISS", "missing") for r in rows)
    lines.append(f"{sum(r['verdict'] == 'PASS' for r in rows)} targets met, {n_miss} missed or missing")
    return "\n".join(lines)


def exit_code(rows):
    """1 when a target is missed or its figure is missing (the script's exit status), else 0."""
    return 1 if any(r["verdict"] in ("MISS", "missing") for r in rows) else 0


def selftest():
    import tempfile
    d = tempfile.mkdtemp()
    json.dump({"decode_tok_s": 200.0, "prefill_tok_s": 30000.0,
               "roofline": {"fraction": 0.96, "weight_bytes_per_token": 15e9}, "devices": [{"copy_gbps": 3000}]},
              open(f"{d}/strata-BF16.json", "w"))
    json.dump([{"n_prompt": 0, "n_gen": 128, "avg_ts": 170.0}, {"n_prompt": 512, "n_gen": 0, "avg_ts": 25000.0}],
              open(f"{d}/llama-BF16.json", "w"))
    rows = {r["figure"]: r for r in build(d)}
    ok = (rows["BF16 decode tg128 vs llama.cpp"]["verdict"] == "PASS"          # 1.18 >= 1.15
          and rows["BF16 prefill pp512 vs llama.cpp"]["verdict"] == "MISS"     # 1.2 < 1.3
          and rows["BF16 decode vs copy roofline"]["verdict"] == "PASS"
          and rows["Q8_0 decode tg128 vs llama.cpp"]["verdict"] == "missing"
          and exit_code(list(rows.values())) == 1
          and exit_code([r for r in rows.values() if r["verdict"] == "PASS"]) == 0)
    print("selftest", "ok" if ok else "FAILED")
    return 0 if ok else 1


def main():
    if sys.argv[1:2] == ["--selftest"]:
        return selftest()
    qc, commit = sys.argv[1], sys.argv[2]
    gpu = os.popen("nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null").read().strip().splitlines()
    gpu = gpu[0] if gpu else "?"
    rows = build(qc)
    text = render(rows, gpu, commit)
    json.dump({"gpu": gpu, "commit": commit, "rows": rows}, open(f"{qc}/results.json", "w"), indent=1)
    open(f"{qc}/table.txt", "w").write(text + "\n")
    print(text)
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
