#!/usr/bin/env python3
"""The CPU engine on quantized GGUF files against an independent reference.

For every file of tests/fixtures/models/qwen2-quant (one Qwen2 model
quantized to q8_0 q4_0 q4_1 q5_0 q5_1 iq4_nl q4_k q5_k q6_k and the q4_k_m
mix, tools/fixtures/make_quant_fixtures.py):
  - the reference: gguf-py dequantizes every tensor (not strata's dtype.c)
    and tools/quantize_ref.py runs a float64 forward pass; its 16 greedy ids
    must equal reference.json's (the fixture has not drifted) and its tensor
    types the ones the file is meant to hold;
  - `strata generate -m FILE --cpu --tokens PROMPT -n 16 --logits` must give
    the same 16 ids, and every logits row (12 prompt rows, then the row that
    chose each later id) within 1e-4 of the reference, relative to the row's
    max |logit| (strata computes in fp32 over the same dequantized values).

    python3 tests/engine/quant_fixtures.py --strata build/strata
Exit 1 when any file fails."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import quantize_ref  # noqa: E402

TOL = 1e-4


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strata", required=True)
    ap.add_argument("--dir", default=os.path.join(ROOT, "tests", "fixtures", "models", "qwen2-quant"))
    ap.add_argument("--only", help="comma-separated types")
    args = ap.parse_args()
    ref = json.load(open(os.path.join(args.dir, "reference.json")))
    tokens = ref["tokens"]
    prompt = ",".join(map(str, tokens))
    n_new = len(next(iter(ref["files"].values()))["greedy_tokens"])
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for t, info in ref["files"].items():
            if args.only and t not in args.only.split(","):
                continue
            path = os.path.join(args.dir, info["file"])
            W, hp, types = quantize_ref.load(path)
            ids, want = quantize_ref.greedy(W, hp, tokens, n_new)
            problems = []
            if sorted(set(types.values())) != info["types"]:
                problems.append(f"tensor types {sorted(set(types.values()))}, reference.json says {info['types']}")
            if ids != info["greedy_tokens"]:
                problems.append(f"numpy reference ids {ids} differ from reference.json's {info['greedy_tokens']}")
            npy = os.path.join(tmp, f"{t}.npy")
            cmd = [args.strata, "generate", "-m", path, "--cpu", "--tokens", prompt, "-n", str(n_new), "--logits", npy]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            got_ids = None
            for line in reversed(p.stdout.strip().splitlines()):
                if line and all(c.isdigit() or c == "," for c in line):
                    got_ids = [int(v) for v in line.split(",")]
                    break
            worst = float("nan")
            if p.returncode != 0 or got_ids is None or not os.path.exists(npy):
                problems.append(f"strata failed (rc {p.returncode}): {p.stderr.strip()[-300:]}")
            else:
                if got_ids != ids:
                    problems.append(f"strata ids {got_ids}, reference {ids}")
                got = np.load(npy).astype(np.float64)
                if got.shape != want.shape:
                    problems.append(f"logits shape {got.shape}, reference {want.shape}")
                else:
                    rel = np.abs(got - want).max(axis=1) / np.abs(want).max(axis=1)
                    worst = float(rel.max())
                    if not np.isfinite(rel).all() or worst > TOL:
                        problems.append(f"logits row {int(np.nanargmax(rel))}: rel {worst:.2e} > {TOL:.0e}")
            status = "ok" if not problems else "FAIL"
            ok &= not problems
            print(f"{status:4s} {t:7s} {','.join(info['types']):22s} ids {'match' if got_ids == ids else 'DIFFER'}  "
                  f"logits rel max {worst:.2e}")
            for pr in problems:
                print(f"     {pr}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
