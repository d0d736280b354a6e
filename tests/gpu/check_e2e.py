#!/usr/bin/env python3
"""Checks behind tests/gpu/e2e.sh (numpy only; runs on the GPU machine and here).

Subcommands (each appends one JSON record to --results FILE and prints one line):

  compare    a run's greedy ids and --logits .npy against the CPU engine's:
             ids identical; per row rel = max|got - ref| / max|ref| within the
             tolerance of the run's precision class (from the plan JSON: any stage
             with bf16/fp16 matmul inputs or KV cache is 'bf16', else 'fp32').
             A flipped greedy id is TIE when the CPU's top-1 vs the chosen id gap
             is within the tolerance (reported with the gap; fatal only with
             --strict-ties), else FAIL. Rows after the first flip see different
             contexts and are not compared.
  reference  the CPU engine against a fixture's reference.json (transformers fp32):
             prompt-row logits within 1e-4 relative and greedy_tokens identical.
  bench      a `strata bench --json` output, parsed defensively: per-device memory
             (cudaMemGetInfo) within 5% + 256 MiB of the plan's estimate; decode
             tok/s and the fraction of the copy roofline (>= --min-roofline).
  record     a record made by the shell (build, sanitizer, skips).
  summary    the table of every record; exit 1 when any record FAILed.
  selftest   (CI, no GPU) --strata BIN: the CPU engine on tests/gpu/models/tiny-4l against
             its reference.json (transformers), run twice (bit-identical), and compare's
             verdicts on planted errors (noise over tol, NaN, near-tie and wide flips,
             a wrong row count, an id that is not its row's argmax).

Exit status: 0 PASS / TIE / PERF / SKIP / INFO, 1 FAIL (TIE too with --strict-ties).
"""
import argparse
import json
import math
import os
import re
import sys

import numpy as np

MIB = 1 << 20
TOL = {"fp32": 1e-4, "bf16": 2.5e-2}


def parse_ids(s):
    s = (s or "").strip()
    if not s:
        return []
    return [int(t) for t in s.split(",")]


def ids_from_stdout(path):
    """The last line that is only comma-separated ids (what generate --tokens prints)."""
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        return None
    for ln in reversed(lines):
        ln = ln.strip()
        if re.fullmatch(r"\d+(,\d+)*", ln):
            return [int(t) for t in ln.split(",")]
    return None


def line_of(rec, width=0):
    det = rec.get("detail", "")
    if width and len(det) > width:
        det = det[:width - 3] + "..."
    return f"{rec['status']:4s}  {rec.get('part', ''):9s} {rec.get('case', '')}  {det}"


def emit(args, rec):
    rec.setdefault("part", args.part)
    rec.setdefault("case", args.case)
    print(line_of(rec))
    if args.results:
        with open(args.results, "a") as f:
            f.write(json.dumps(rec) + "\n")
    bad = rec["status"] == "FAIL" or (rec["status"] == "TIE" and getattr(args, "strict_ties", False))
    return 1 if bad else 0


def load_npy(path, what):
    try:
        a = np.load(path)
    except Exception as e:  # noqa: BLE001 - any read error is a failed check with its message
        raise ValueError(f"{what} logits {path}: {e}")
    if a.ndim != 2:
        raise ValueError(f"{what} logits {path}: shape {a.shape}, expected (rows, n_vocab)")
    return a.astype(np.float64)


def plan_class(plan_path):
    """('fp32' | 'bf16', 'stage text') from `strata plan --format json`."""
    try:
        txt = open(plan_path).read()
        p = json.loads(txt[txt.index("{"): txt.rindex("}") + 1])
    except (OSError, ValueError) as e:
        return None, f"plan unreadable ({e})"
    cls = "fp32"
    parts = []
    for st in p.get("stages", []):
        prec = str(st.get("precision", "?")).lower()
        kv = str(st.get("kv_dtype", "?")).lower()
        if prec in ("bf16", "fp16", "f16") or kv in ("bf16", "f16", "fp16"):
            cls = "bf16"
        lay = st.get("layers", ["?", "?"])
        parts.append(f"{st.get('label', '?')}[{lay[0]}-{lay[-1]}]:{prec}/{st.get('attention', '?')}/kv {kv}")
    if not parts:
        return None, "plan has no stages"
    return cls, " > ".join(parts)


def cmd_compare(args):
    rec = {"model": args.model, "transport": args.transport}
    cls, stages = (args.tol_class, "") if args.tol_class else plan_class(args.plan) if args.plan else (None, "")
    if cls is None:
        rec.update(status="FAIL", detail=f"no precision class: {stages}")
        return emit(args, rec)
    tol = args.tol if args.tol is not None else (args.tol_bf16 if cls == "bf16" else args.tol_fp32)
    rec.update(cls=cls, tol=tol, stages=stages)
    ref_ids = parse_ids(args.ref_ids) if args.ref_ids is not None else ids_from_stdout(args.ref_stdout)
    got_ids = parse_ids(args.got_ids) if args.got_ids is not None else ids_from_stdout(args.got_stdout)
    if not ref_ids:
        rec.update(status="FAIL", detail="no CPU reference ids")
        return emit(args, rec)
    if not got_ids:
        rec.update(status="FAIL", detail="the run printed no token ids (see the log)")
        return emit(args, rec)
    try:
        ref = load_npy(args.ref_npy, "CPU")
        got = load_npy(args.got_npy, "run")
    except ValueError as e:
        rec.update(status="FAIL", detail=str(e))
        return emit(args, rec)
    n_p, n = args.n_prompt, len(ref_ids)
    problems = []
    if len(got_ids) != n:
        problems.append(f"{len(got_ids)} ids, CPU {n}")
    if ref.shape != got.shape:
        rec.update(status="FAIL", detail="; ".join([f"logits shape {got.shape}, CPU {ref.shape}"] + problems))
        return emit(args, rec)
    if ref.shape[0] != n_p + n - 1:
        problems.append(f"logits have {ref.shape[0]} rows, expected n_prompt + n - 1 = {n_p + n - 1}")
    if not np.isfinite(got).all():
        bad = np.argwhere(~np.isfinite(got))[0]
        rec.update(status="FAIL", detail=f"non-finite logit at row {bad[0]} col {bad[1]}")
        return emit(args, rec)
    # first generated position where the ids differ
    flip = next((i for i in range(min(n, len(got_ids))) if got_ids[i] != ref_ids[i]), None)
    last_row = ref.shape[0] - 1 if flip is None else n_p - 1 + flip
    scale = np.abs(ref).max(axis=1)
    scale[scale == 0] = 1.0
    rel = np.abs(got - ref).max(axis=1) / scale
    rel_p = float(rel[:min(n_p, last_row + 1)].max())
    rel_d = float(rel[n_p:last_row + 1].max()) if last_row >= n_p else 0.0
    rec.update(rel_prefill=rel_p, rel_decode=rel_d, rows_compared=last_row + 1, rows=int(ref.shape[0]))
    # the run's ids must be the argmax of its own logits (greedy on the device vs the logits it reports)
    for i in range(min(n, len(got_ids))):
        r = n_p - 1 + i
        if r < got.shape[0] and got[r, got_ids[i]] < got[r].max():
            problems.append(f"id {i} ({got_ids[i]}) is not the argmax of the run's own row {r} "
                            f"({int(got[r].argmax())}, {got[r].max() - got[r, got_ids[i]]:.3g} higher)")
            break
    detail = f"{cls} tol {tol:g}: rel prefill {rel_p:.2e} decode {rel_d:.2e}"
    status = "PASS"
    if max(rel_p, rel_d) > tol:
        status = "FAIL"
        worst = int(rel[:last_row + 1].argmax())
        col = int(np.abs(got[worst] - ref[worst]).argmax())
        problems.append(f"row {worst} col {col}: run {got[worst, col]:.6g} CPU {ref[worst, col]:.6g} "
                        f"(rel {rel[worst]:.2e} > {tol:g})")
    if flip is not None:
        r = n_p - 1 + flip
        gap = float(ref[r, ref_ids[flip]] - ref[r, got_ids[flip]]) / float(scale[r])
        rec.update(flip_at=flip, flip_gap_rel=gap)
        # each logit may move by tol * max|ref| within tolerance, so a pair by twice that
        msg = (f"greedy id {flip} differs: run {got_ids[flip]} CPU {ref_ids[flip]}, CPU logit gap "
               f"{gap * scale[r]:.4g} = {gap:.2e} of max|logit| (near-tie bound 2 x tol = {2 * tol:g}); "
               f"rows after {r} not compared")
        if gap <= 2 * tol and status == "PASS":
            status = "TIE"
        else:
            status = "FAIL"
        problems.append(msg)
    elif len(got_ids) != n:
        status = "FAIL"
    if problems and status == "PASS":
        status = "FAIL"
    if args.reference_json and status == "PASS":
        want = json.load(open(args.reference_json)).get("greedy_tokens")
        if want is not None and got_ids[:len(want)] != want[:len(got_ids)]:
            k = next(i for i in range(min(len(want), len(got_ids))) if want[i] != got_ids[i])
            problems.append(f"ids differ from reference.json greedy_tokens at {k}: {got_ids[k]} vs {want[k]}")
            if status == "PASS":
                status = "FAIL"
    rec.update(status=status, detail=detail + ("; " + "; ".join(problems) if problems else ""),
               ids=",".join(map(str, got_ids)))
    return emit(args, rec)


def cmd_reference(args):
    rec = {"model": args.model}
    ids = parse_ids(args.ids) if args.ids is not None else ids_from_stdout(args.stdout)
    ref = json.load(open(args.reference_json))
    try:
        a = load_npy(args.npy, "CPU")
    except ValueError as e:
        rec.update(status="FAIL", detail=str(e))
        return emit(args, rec)
    want = np.array(ref["logits"], dtype=np.float64)
    n_p = want.shape[0]
    problems = []
    rel = float((np.abs(a[:n_p] - want).max(axis=1) / np.abs(want).max(axis=1)).max())
    if rel > args.tol:
        problems.append(f"prompt logits rel {rel:.2e} > {args.tol:g}")
    g = ref.get("greedy_tokens", [])
    if not ids or ids[:len(g)] != g[:len(ids)]:
        problems.append(f"ids {ids} != reference.json greedy_tokens {g}")
    detail = f"CPU engine vs transformers (reference.json): prompt logits rel {rel:.2e}"
    rec.update(status="FAIL" if problems else "PASS", rel_prefill=rel,
               detail=detail + ("; " + "; ".join(problems) if problems else f", {len(g)} greedy ids identical"))
    return emit(args, rec)


# ---------------------------------------------------------------- bench JSON

def flatten(x, path=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from flatten(v, f"{path}.{k}" if path else str(k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from flatten(v, f"{path}[{i}]")
    else:
        yield path, x


def dicts(x, path=""):
    if isinstance(x, dict):
        yield path, x
        for k, v in x.items():
            yield from dicts(v, f"{path}.{k}" if path else str(k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from dicts(v, f"{path}[{i}]")


def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def to_bytes(key, v):
    k = key.lower()
    for suf, mul in (("gib", 1 << 30), ("mib", MIB), ("kib", 1024), ("_gb", 1e9), ("_mb", 1e6)):
        if k.endswith(suf):
            return v * mul
    return v


def find(flat, pattern, exclude=r"pred|plan|estimat|target|expect|llama"):
    """The first numeric field whose last key matches pattern, outside planned/predicted parts."""
    for k, v in flat:
        leaf = re.sub(r"\[\d+\]$", "", k.rsplit(".", 1)[-1]).lower()
        if num(v) and re.search(pattern, leaf) and not re.search(exclude, k.lower()):
            return k, v
    return None, None


def safetensors_weight_bytes(model_dir):
    """Bytes of every tensor but the token embedding (what a decode step reads)."""
    import struct
    total = emb = 0
    for f in sorted(os.listdir(model_dir)):
        if not f.endswith(".safetensors"):
            continue
        with open(os.path.join(model_dir, f), "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            hdr = json.loads(fh.read(n))
        for name, t in hdr.items():
            if name == "__metadata__":
                continue
            b = t["data_offsets"][1] - t["data_offsets"][0]
            total += b
            if name.endswith("embed_tokens.weight"):
                emb += b
    return total - emb


def cmd_bench(args):
    rec = {}
    try:
        txt = open(args.json).read()
    except OSError as e:
        rec.update(status="FAIL", detail=f"no bench output: {e}")
        return emit(args, rec)
    try:
        data = json.loads(txt[txt.index("{"): txt.rindex("}") + 1])
    except ValueError as e:
        rec.update(status="FAIL", detail=f"bench output is not JSON ({e}); raw output in the log")
        print("---- raw bench output ----\n" + txt[-4000:] + "\n----")
        return emit(args, rec)
    flat = list(flatten(data))
    problems, notes, missing = [], [], []

    # per-device memory: objects with a measured and a planned/estimated byte count
    mem_rows = []
    for path, d in dicts(data):
        keys = {k: v for k, v in d.items() if num(v)}
        meas = [k for k in keys if re.search(r"measured|used|in_use|actual|cuda_mem|meminfo", k.lower())
                and not re.search(r"plan|estimat|pred", k.lower())]
        est = [k for k in keys if re.search(r"plan|estimat|pred", k.lower()) and re.search(r"mem|byte|gib|mib|total", k.lower() + path.lower())]
        if meas and est:
            m, e = to_bytes(meas[0], keys[meas[0]]), to_bytes(est[0], keys[est[0]])
            lim = 0.05 * e + 256 * MIB
            ok = abs(m - e) <= lim
            flag = next((d[k] for k in d if isinstance(d[k], bool) and re.search(r"within|ok|outside|flag", k.lower())), None)
            label = d.get("device") or d.get("label") or d.get("name") or path
            mem_rows.append(dict(device=str(label), measured=m, estimate=e, limit=lim, ok=ok, bench_flag=flag,
                                 keys=f"{meas[0]} vs {est[0]}"))
    if args.check_memory:
        if not mem_rows:
            missing.append("per-device memory (measured vs plan estimate)")
        for r in mem_rows:
            s = (f"{r['device']}: used {r['measured'] / MIB:.0f} MiB vs plan {r['estimate'] / MIB:.0f} MiB "
                 f"(diff {(r['measured'] - r['estimate']) / MIB:+.0f}, limit ±{r['limit'] / MIB:.0f})")
            notes.append(s)
            if not r["ok"]:
                problems.append("memory outside 5% + 256 MiB: " + s)
            if r["bench_flag"] is not None:
                notes.append(f"bench's own flag: {r['bench_flag']}")
        rec["memory"] = mem_rows

    rate = r"(tok_s|toks|tok_per_s|tokens_per_s|tokens_per_sec|tokens_per_second|tps)$"  # not decode_tokens
    _, dec = find(flat, r"^decode_?" + rate)
    _, pre = find(flat, r"^prefill_?" + rate)
    roof = roof_key = None
    for k, v in flat:      # a fraction under a 'roofline' key, the whole run's before any stage's
        kl = k.lower()
        if num(v) and "roofline" in kl and re.search(r"frac", kl.rsplit(".", 1)[-1]) and not re.search(r"plan|pred", kl):
            if roof is None or not re.search(r"stages?\[", kl):
                roof, roof_key = v, k
                if not re.search(r"stages?\[", kl):
                    break
    if roof is None:
        roof_key, roof = find(flat, r"^roofline(_pct|_percent)?$|frac.*copy|copy.*frac|vs_copy")
    _, bw = find(flat, r"copy.*(gbps|gb_s|bw|bandwidth)|(bw|bandwidth).*copy")
    _, wb = find(flat, r"weight_bytes_per_token")
    if wb is None:
        _, wb = find(flat, r"weight.*bytes|bytes.*weight")
    _, stages_n = find(flat, r"^n_stages$|^stages$")
    if dec is not None:
        rec["decode_tok_s"] = dec
        notes.append(f"decode {dec:.1f} tok/s")
    else:
        missing.append("decode tok/s")
    if pre is not None:
        rec["prefill_tok_s"] = pre
        notes.append(f"prefill {pre:.0f} tok/s")
    if roof is not None and roof_key and re.search(r"pct|percent", roof_key.lower()):
        roof = roof / 100.0          # a percentage
    how = "bench"
    if roof is None and dec is not None:
        if bw is None and args.copy_gbps:
            bw = args.copy_gbps
            how = "e2e: copy bw from torch"
        if wb is None and args.model_dir:
            wb = safetensors_weight_bytes(args.model_dir)
            how += ", weight bytes from safetensors"
        if bw and wb:
            roof = dec * wb / (bw * 1e9)
            how = "computed (" + how + ")"
    if args.min_roofline is not None:
        if roof is None:
            missing.append("roofline fraction")
        else:
            rec["roofline"] = roof
            rl = f"roofline {roof * 100:.1f}% ({how}"
            if bw:
                rl += f", copy {bw:.0f} GB/s"
            if wb:
                rl += f", weights {wb / 1e9:.2f} GB -> {bw * 1e9 / wb:.0f} tok/s at 100%" if bw else ""
            notes.append(rl + ")")
    for k, v in flat:
        if isinstance(v, bool) and re.search(r"tokens_valid$", k) and not v:
            problems.append(f"{k} is false: the benchmark's generated tokens were invalid")
    status = "PASS"
    if problems:
        status = "FAIL"
    elif args.min_roofline is not None and roof is not None and roof < args.min_roofline:
        status = "PERF"
        notes.append(f"below the {args.min_roofline * 100:.0f}% target")
    if missing:
        status = "FAIL" if status == "PASS" and args.strict_fields else ("INFO" if status == "PASS" else status)
        notes.append("NOT FOUND in bench JSON: " + ", ".join(missing) + " (raw JSON in the log)")
        print("---- bench JSON (fields not found: " + ", ".join(missing) + ") ----")
        print(json.dumps(data, indent=1)[:20000])
        print("----")
    rec.update(status=status, detail="; ".join(problems + notes))
    return emit(args, rec)


def cmd_record(args):
    return emit(args, {"status": args.status, "detail": args.detail or ""})


def read_records(path):
    recs = []
    if os.path.exists(path):
        for ln in open(path):
            ln = ln.strip()
            if ln:
                recs.append(json.loads(ln))
    return recs


def cmd_last(args):
    """Print the newest record (or every record of --part that is not PASS) as one line each."""
    recs = read_records(args.results)
    if args.part:
        sel = [r for r in recs if r.get("part") == args.part]
        bad = [r for r in sel if r["status"] != "PASS"]
        print(f"{args.part}: {len(sel)} checks, {len(bad)} not PASS")
        for r in bad:
            print(line_of(r, args.width))
    elif recs:
        print(line_of(recs[-1], args.width))
    return 0


def cmd_make_info(args):
    """tools/make_random_model.py's JSON line -> 'COPY_GBPS<TAB>one-line description'."""
    info = None
    for ln in open(args.file, errors="replace"):
        if ln.startswith("{"):
            try:
                info = json.loads(ln)
            except ValueError:
                pass
    if info is None:
        print("\tno JSON line from tools/make_random_model.py")
        return 1
    print(f"{info.get('copy_gbps', '')}\t{info['params'] / 1e9:.2f}e9 params, {info['bytes'] / 1e9:.1f} GB in "
          f"{info['files']} files; build {info['build_s']}s, save {info['save_s']}s; torch copy "
          f"{info.get('copy_gbps')} GB/s; torch {info.get('torch')}, transformers {info.get('transformers')}")
    return 0


def cmd_copy_bw(args):
    """Device-to-device copy bandwidth of cuda:0 through torch (tools/make_random_model.py's measurement)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
    import make_random_model
    print(f"{make_random_model.copy_bandwidth('cuda'):.1f}")
    return 0


def cmd_plan_summary(args):
    """`strata plan --format json` -> 'N_DEVICES_USED<TAB>stages and predicted decode'."""
    txt = open(args.file).read()
    p = json.loads(txt[txt.index("{"): txt.rindex("}") + 1])
    st = p["stages"]
    parts = [f"{s['label']} {s['layers'][0]}-{s['layers'][1]} {s['precision']}/{s['attention']} "
             f"{s['memory']['total'] / 2**30:.2f} GiB" for s in st]
    dec = p.get("predicted", {}).get("decode_tok_s", 0)
    print(f"{len({s['device'] for s in st})}\t{' | '.join(parts)} | predicted decode {dec:.0f} tok/s")
    return 0


def cmd_summary(args):
    recs = read_records(args.results)
    counts = {}
    for r in recs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    w_case = max([len(r.get("case", "")) for r in recs] + [4])
    print(f"{'result':6s} {'part':9s} {'case':{w_case}s}  detail")
    for r in recs:
        det = r.get("detail", "")
        if len(det) > args.width:
            det = det[:args.width - 3] + "..."
        print(f"{r['status']:6s} {r.get('part', ''):9s} {r.get('case', ''):{w_case}s}  {det}")
    tot = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    fails = counts.get("FAIL", 0) + (counts.get("TIE", 0) if args.strict_ties else 0)
    print(f"e2e: {len(recs)} checks: {tot or 'none'} -> {'FAILED' if fails else 'all correctness checks passed'}")
    if counts.get("TIE"):
        print("note: TIE = a greedy id flipped where the CPU's top-2 logits are within the stage precision's "
              "tolerance (gap shown); not counted as a failure unless E2E_STRICT_TIES=1")
    return 1 if fails or not recs else 0


def cmd_selftest(args):
    import subprocess
    import tempfile
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    model = os.path.join(root, "tests", "gpu", "models", "tiny-4l")
    rj = os.path.join(model, "reference.json")
    prompt = ",".join(map(str, json.load(open(rj))["tokens"]))
    fails = []
    with tempfile.TemporaryDirectory() as tmp:
        res = os.path.join(tmp, "r.jsonl")

        def gen(tag):
            npy, so = os.path.join(tmp, tag + ".npy"), os.path.join(tmp, tag + ".out")
            with open(so, "w") as f:
                r = subprocess.run([args.strata, "generate", "-m", model, "--cpu", "--tokens", prompt, "-n", "16",
                                    "--logits", npy], stdout=f, stderr=subprocess.PIPE, text=True)
            if r.returncode != 0:
                fails.append(f"strata generate rc {r.returncode}: {r.stderr.strip()[-300:]}")
            return npy, so

        a_npy, a_out = gen("a")
        b_npy, b_out = gen("b")
        if fails:
            print("\n".join(fails))
            return 1
        ns = argparse.Namespace(results=res, part="selftest", strict_ties=False)

        def check(case, expect, fn, **kw):
            before = len(read_records(res))
            fn(argparse.Namespace(**vars(ns), case=case, **kw))
            got = read_records(res)[before:]
            st = got[-1]["status"] if got else "none"
            if st != expect:
                fails.append(f"{case}: expected {expect}, got {st}: {got[-1].get('detail') if got else ''}")

        check("cpu vs transformers", "PASS", cmd_reference, npy=a_npy, ids=None, stdout=a_out, reference_json=rj,
              tol=1e-4, model="tiny-4l")
        ref = np.load(a_npy)
        ids = ids_from_stdout(a_out)
        n_p = len(prompt.split(","))
        base = dict(ref_npy=a_npy, ref_ids=None, ref_stdout=a_out, got_ids=None, n_prompt=n_p, plan=None, tol=None,
                    tol_fp32=TOL["fp32"], tol_bf16=TOL["bf16"], reference_json=None, model="", transport="")
        check("cpu twice bit-identical", "PASS", cmd_compare, **dict(base, got_npy=b_npy, got_stdout=b_out,
                                                                     tol_class="fp32", tol=0.0))
        scale = np.abs(ref).max(axis=1, keepdims=True)
        rng = np.random.default_rng(7)

        def planted(case, expect, arr, gids, cls, reference_json=None):
            p = os.path.join(tmp, "p.npy")
            np.save(p, arr.astype(np.float32))
            check(case, expect, cmd_compare, **dict(base, got_npy=p, got_stdout=None, got_ids=",".join(map(str, gids)),
                                                    tol_class=cls, reference_json=reference_json))

        noise = rng.standard_normal(ref.shape) * scale
        planted("fp32 noise 2e-5", "PASS", ref + 2e-5 / 4 * noise, ids, "fp32", rj)
        planted("fp32 noise 1e-3", "FAIL", ref + 1e-3 / 3 * noise, ids, "fp32")
        planted("bf16 noise 5e-3", "PASS", ref + 5e-3 / 4 * noise, ids, "bf16")
        planted("bf16 noise 1e-1", "FAIL", ref + 1e-1 / 3 * noise, ids, "bf16")
        x = ref.copy()
        x[3, 7] = np.nan
        planted("NaN", "FAIL", x, ids, "bf16")
        planted("a row short", "FAIL", ref[:-1], ids, "bf16")
        rows = [n_p - 1 + i for i in range(len(ids))]
        gaps = [(np.sort(ref[r])[-1] - np.sort(ref[r])[-2]) / scale[r, 0] for r in rows]
        i = int(np.argmin(gaps))
        r = rows[i]
        top, second = int(np.argsort(ref[r])[-1]), int(np.argsort(ref[r])[-2])
        half = (ref[r, top] - ref[r, second]) / 2
        x = ref.copy()            # each of the two logits moves by half the gap (+ a hair): a flip in tolerance
        x[r, top] -= half
        x[r, second] += half + 1e-3 * scale[r, 0]
        g = list(ids)
        g[i] = second
        planted("near-tie flip bf16", "TIE", x, g, "bf16")
        planted("near-tie flip fp32", "FAIL", x, g, "fp32")
        j = int(np.argmax(gaps))
        r = rows[j]
        far = int(np.argsort(ref[r])[-6])
        x = ref.copy()
        x[r, far] = ref[r].max() + 1.0
        g = list(ids)
        g[j] = far
        planted("wide flip bf16", "FAIL", x, g, "bf16")
        g = list(ids)
        g[2] = (g[2] + 1) % ref.shape[1]
        planted("id not its row's argmax", "FAIL", ref, g, "bf16")
    for f in fails:
        print("selftest FAIL: " + f)
    print(f"selftest: {'FAILED' if fails else 'ok'}")
    return 1 if fails else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--results", help="append the record (JSON line) here")
        p.add_argument("--part", default="")
        p.add_argument("--case", default="")
        p.add_argument("--strict-ties", action="store_true")

    c = sub.add_parser("compare")
    common(c)
    c.add_argument("--ref-npy", required=True)
    c.add_argument("--got-npy", required=True)
    c.add_argument("--ref-ids")
    c.add_argument("--got-ids")
    c.add_argument("--ref-stdout", help="read the CPU ids from this stdout file")
    c.add_argument("--got-stdout", help="read the run's ids from this stdout file")
    c.add_argument("--n-prompt", type=int, required=True)
    c.add_argument("--plan", help="`strata plan --format json` output: gives the precision class")
    c.add_argument("--tol-class", choices=sorted(TOL))
    c.add_argument("--tol", type=float, help="override the tolerance")
    c.add_argument("--tol-fp32", type=float, default=TOL["fp32"])
    c.add_argument("--tol-bf16", type=float, default=TOL["bf16"])
    c.add_argument("--reference-json", help="also require reference.json's greedy_tokens (F32 weights)")
    c.add_argument("--model", default="")
    c.add_argument("--transport", default="")
    c.set_defaults(fn=cmd_compare)

    r = sub.add_parser("reference")
    common(r)
    r.add_argument("--npy", required=True)
    r.add_argument("--ids")
    r.add_argument("--stdout")
    r.add_argument("--reference-json", required=True)
    r.add_argument("--tol", type=float, default=1e-4)
    r.add_argument("--model", default="")
    r.set_defaults(fn=cmd_reference)

    b = sub.add_parser("bench")
    common(b)
    b.add_argument("--json", required=True, help="the file holding `strata bench --json` output")
    b.add_argument("--check-memory", action="store_true")
    b.add_argument("--min-roofline", type=float)
    b.add_argument("--copy-gbps", type=float, help="fallback copy bandwidth (GB/s, read + write)")
    b.add_argument("--model-dir", help="fallback: weight bytes from this model's safetensors")
    b.add_argument("--strict-fields", action="store_true", help="a field that cannot be found is a FAIL")
    b.set_defaults(fn=cmd_bench)

    rc = sub.add_parser("record")
    common(rc)
    rc.add_argument("--status", required=True, choices=["PASS", "FAIL", "SKIP", "PERF", "INFO", "TIE"])
    rc.add_argument("--detail")
    rc.set_defaults(fn=cmd_record)

    mi = sub.add_parser("make-info")
    mi.add_argument("file")
    mi.set_defaults(fn=cmd_make_info)
    cb = sub.add_parser("copy-bw")
    cb.set_defaults(fn=cmd_copy_bw)
    ps = sub.add_parser("plan-summary")
    ps.add_argument("file")
    ps.set_defaults(fn=cmd_plan_summary)

    la = sub.add_parser("last")
    la.add_argument("--results", required=True)
    la.add_argument("--part", help="instead: every record of this part that did not PASS")
    la.add_argument("--width", type=int, default=200)
    la.set_defaults(fn=cmd_last)

    s = sub.add_parser("summary")
    s.add_argument("--results", required=True)
    s.add_argument("--width", type=int, default=110)
    s.add_argument("--strict-ties", action="store_true")
    s.set_defaults(fn=cmd_summary)

    st = sub.add_parser("selftest")
    st.add_argument("--strata", required=True, help="the strata binary (CPU engine)")
    st.set_defaults(fn=cmd_selftest)

    args = ap.parse_args()
    sys.exit(args.fn(args))


if __name__ == "__main__":
    main()
