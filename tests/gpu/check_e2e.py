#!/usr/bin/env python3
"""Checks behind tests/gpu/e2e.sh (numpy only; runs on the GPU machine and here).

Subcommands (each appends one JSON record to --results FILE and prints one line):

  compare    a run's greedy ids and --logits .npy against the CPU engine's, teacher
             forced: where the run's greedy id differs from the CPU's at generated
             position i, the run is repeated from the CPU's ids (`-- STRATA generate
             ...` given after the options; --tokens PROMPT + CPU ids 0..i, -n N-i-1)
             so that every row is compared in the CPU's context. Per row
             rel = max|got - ref| / max|ref| within the tolerance of the run's
             precision class (from the plan JSON: any stage with bf16/fp16 matmul
             inputs or KV cache is 'bf16', else 'fp32'). A flip is TIE when the CPU's
             gap between its id and the run's is within 2 x tol of max|ref| (each
             logit may move by tol), reported with the gap (fatal with
             --strict-ties), else FAIL. --require-peaked: FAIL when the CPU's own
             smallest greedy gap is inside that window (a flip there could not fail;
             the e2e models are peaked so that it never is: bf16_bound.py --check).
  reference  the CPU engine against a fixture's reference.json (transformers fp32):
             prompt-row logits within 1e-4 relative and all greedy_tokens identical.
  bench      a `strata bench --json` output, by its exact keys: per CUDA device
             mem_in_use_bytes within 5% + 256 MiB of mem_estimate_bytes (--check-memory),
             decode_tok_s, roofline.fraction >= --min-roofline, tokens_valid. A field
             the check needs that is missing or null is a FAIL.
  record     a record made by the shell (build, sanitizer, skips).
  summary    the table of every record; exit 1 when any record FAILed.
  selftest   (CI, no GPU) --strata BIN: the CPU engine on tests/gpu/models/tiny-4l against
             its reference.json (transformers), run twice (bit-identical), and each
             verdict on planted inputs: noise over tol, NaN, a short run, a near-tie
             flip (TIE) whose later rows are still compared (a bad row after it FAILs),
             a wide flip, a flip without a rerun command, an id that is not its row's
             argmax, an unpeaked model under --require-peaked, plan and bench JSON
             with missing or null fields.

Exit status: 0 PASS / TIE / PERF / SKIP / INFO, 1 FAIL (TIE too with --strict-ties).
"""
import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np

MIB = 1 << 20
TOL = {"fp32": 1e-4, "bf16": 2.5e-2}


def parse_ids(s):
    s = (s or "").strip()
    if not s:
        return []
    return [int(t) for t in s.split(",")]


def ids_from_text(text):
    """The last line that is only comma-separated ids (what generate --tokens prints)."""
    for ln in reversed(text.splitlines()):
        ln = ln.strip()
        if re.fullmatch(r"\d+(,\d+)*", ln):
            return [int(t) for t in ln.split(",")]
    return None


def ids_from_stdout(path):
    try:
        return ids_from_text(open(path, errors="replace").read())
    except OSError:
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
    """('fp32' | 'bf16', 'stage text') from `strata plan --format json`; (None, why) when a
    stage lacks a field the class needs."""
    try:
        txt = open(plan_path).read()
        p = json.loads(txt[txt.index("{"): txt.rindex("}") + 1])
    except (OSError, ValueError) as e:
        return None, f"plan unreadable ({e})"
    cls = "fp32"
    parts = []
    stages = p.get("stages")
    if not isinstance(stages, list) or not stages:
        return None, "plan JSON has no 'stages'"
    for i, st in enumerate(stages):
        missing = [k for k in ("precision", "kv_dtype", "layers") if st.get(k) is None]
        if missing:
            return None, f"plan JSON stage {i} lacks {', '.join(missing)}"
        prec, kv = str(st["precision"]).lower(), str(st["kv_dtype"]).lower()
        if prec in ("bf16", "fp16", "f16") or kv in ("bf16", "f16", "fp16"):
            cls = "bf16"
        lay = st["layers"]
        parts.append(f"{st.get('label', st.get('device', '?'))}[{lay[0]}-{lay[-1]}]:{prec}/{st.get('attention', '?')}/kv {kv}")
    return cls, " > ".join(parts)


# ---------------------------------------------------------------- teacher-forced comparison

def greedy_gaps(ref, rows):
    """(top1 - top2) / max|row| of the CPU logits at the given rows."""
    srt = np.sort(ref[rows], axis=1)
    scale = np.abs(ref[rows]).max(axis=1)
    scale[scale == 0] = 1.0
    return (srt[:, -1] - srt[:, -2]) / scale


def teacher_forced(ref, ref_ids, n_p, tol, first, rerun):
    """Compares every logits row of a device run with the CPU's, in the CPU's context.

    ref (rows, V) and ref_ids (N) are the CPU's; rows = n_p + N - 1. first = (ids, logits)
    of the free-running device run. rerun(i0) -> (ids, logits, note) runs the device again
    on the prompt + ref_ids[:i0] for N - i0 new ids (logits again rows x V), or raises
    ValueError. Each run counts up to and including its first flipped id; the next run
    starts after it. Returns a dict: rel (per row), flips [(i, run id, cpu id, gap)],
    problems, runs (notes)."""
    N = len(ref_ids)
    rows = ref.shape[0]
    scale = np.abs(ref).max(axis=1)
    scale[scale == 0] = 1.0
    merged = np.full(ref.shape, np.nan)
    flips, problems, runs = [], [], []
    i0, ids, got = 0, first[0], first[1]
    runs.append("free run")
    while True:
        P = n_p + i0                                   # prefix length of this run
        if got.shape != ref.shape:
            problems.append(f"run from id {i0}: logits shape {got.shape}, CPU {ref.shape}")
            break
        if not np.isfinite(got).all():
            bad = np.argwhere(~np.isfinite(got))[0]
            problems.append(f"run from id {i0}: non-finite logit at row {bad[0]} col {bad[1]}")
            break
        want = ref_ids[i0:]
        if len(ids) != len(want):
            problems.append(f"run from id {i0}: {len(ids)} ids, expected {len(want)}")
        k_flip = next((k for k in range(min(len(ids), len(want))) if ids[k] != want[k]), None)
        last = P - 1 + (k_flip if k_flip is not None else min(len(ids), len(want)) - 1)
        lo = 0 if i0 == 0 else P - 1
        merged[lo:last + 1] = got[lo:last + 1]
        for k in range(0, last - (P - 1) + 1):      # each id is the argmax of its own row
            r = P - 1 + k
            if got[r, ids[k]] < got[r].max():
                problems.append(f"id {i0 + k} ({ids[k]}) is not the argmax of the run's own row {r} "
                                f"({int(got[r].argmax())}, {got[r].max() - got[r, ids[k]]:.3g} higher)")
                break
        if k_flip is None:
            break
        i = i0 + k_flip
        r = P - 1 + k_flip
        gap = float(ref[r, ref_ids[i]] - ref[r, ids[k_flip]]) / float(scale[r])
        flips.append((i, ids[k_flip], ref_ids[i], gap))
        if i + 1 >= N:
            break
        if rerun is None:
            problems.append(f"rows after {r} not compared: no rerun command to feed the CPU's ids")
            break
        try:
            ids, got, note = rerun(i + 1)
        except ValueError as e:
            problems.append(f"teacher-forced run from id {i + 1}: {e}")
            break
        runs.append(note)
        i0 = i + 1
    covered = ~np.isnan(merged).any(axis=1)
    rel = np.full(rows, np.nan)
    rel[covered] = np.abs(merged[covered] - ref[covered]).max(axis=1) / scale[covered]
    if not covered.all() and not problems:
        problems.append(f"rows {np.flatnonzero(~covered).tolist()} were not compared")
    return dict(rel=rel, flips=flips, problems=problems, runs=runs, covered=int(covered.sum()), merged=merged)


def strata_rerun(argv, prompt, ref_ids, npy_base, timeout=120):
    """rerun(i0) for teacher_forced(): `argv --tokens PROMPT+ref_ids[:i0] -n N-i0 --logits FILE`."""
    def rerun(i0):
        npy = f"{npy_base}.tf{i0}.npy"
        cmd = list(argv) + ["--tokens", ",".join(map(str, list(prompt) + list(ref_ids[:i0]))),
                            "-n", str(len(ref_ids) - i0), "--logits", npy]
        print("teacher-forced rerun: " + " ".join(cmd), flush=True)
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ValueError(f"{e}")
        sys.stdout.write(r.stderr[-4000:])
        if r.returncode != 0:
            raise ValueError(f"exit {r.returncode}: {r.stderr.strip()[-300:]}")
        ids = ids_from_text(r.stdout)
        if not ids:
            raise ValueError("printed no token ids")
        return ids, load_npy(npy, "teacher-forced run"), f"forced from id {i0}"
    return rerun


def compare_verdict(ref, ref_ids, n_p, tol, first, rerun, require_peaked=False, reference_ids=None):
    """(status, detail, record fields) of a teacher-forced comparison."""
    res = teacher_forced(ref, ref_ids, n_p, tol, first, rerun)
    rel, problems = res["rel"], list(res["problems"])
    N = len(ref_ids)
    dec_rows = list(range(n_p - 1, n_p - 1 + N))
    gaps = greedy_gaps(ref, dec_rows)
    fields = dict(rows=int(ref.shape[0]), rows_compared=res["covered"], runs=len(res["runs"]),
                  min_greedy_gap=float(gaps.min()), flips=[dict(id=i, run=a, cpu=b, gap=g) for i, a, b, g in res["flips"]])
    with np.errstate(invalid="ignore"):
        rel_p = float(np.nanmax(rel[:n_p])) if np.isfinite(rel[:n_p]).any() else float("nan")
        rel_d = float(np.nanmax(rel[n_p:])) if np.isfinite(rel[n_p:]).any() else 0.0
    fields.update(rel_prefill=rel_p, rel_decode=rel_d)
    detail = (f"tol {tol:g}: rel prefill {rel_p:.2e} decode {rel_d:.2e}, {res['covered']}/{ref.shape[0]} rows "
              f"in {len(res['runs'])} run(s); smallest CPU greedy gap {gaps.min():.2e} (window {2 * tol:g})")
    status = "PASS"
    worst = np.nanargmax(np.where(np.isfinite(rel), rel, -1)) if np.isfinite(rel).any() else None
    if worst is not None and rel[worst] > tol:
        col = int(np.abs(res["merged"][worst] - ref[worst]).argmax())
        problems.append(f"row {worst} col {col}: run {res['merged'][worst, col]:.6g} CPU {ref[worst, col]:.6g} "
                        f"(rel {rel[worst]:.2e} > {tol:g})")
    tie = False
    for i, a, b, g in res["flips"]:
        r = n_p - 1 + i
        msg = (f"greedy id {i} differs: run {a} CPU {b}, CPU logit gap {g:.2e} of max|logit| at row {r}")
        if g <= 2 * tol:
            tie = True
            problems.append(msg + f" (TIE: within 2 x tol = {2 * tol:g})")
        else:
            problems.append(msg + f" (beyond the near-tie window {2 * tol:g}: FAIL)")
            status = "FAIL"
    hard = [p for p in problems if "(TIE:" not in p]
    if hard:
        status = "FAIL"
    elif tie:
        status = "TIE"
    if require_peaked and gaps.min() <= 2 * tol:
        status = "FAIL"
        problems.append(f"the CPU's greedy row {dec_rows[int(gaps.argmin())]} has a top-2 gap of {gaps.min():.2e}, inside "
                        f"the near-tie window {2 * tol:g}: a flip there could not fail (use a peaked model: "
                        f"tools/fixtures/make_peaked.py)")
    if reference_ids is not None and list(ref_ids) != list(reference_ids[:N]) + [None] * (N - len(reference_ids)):
        status = "FAIL"
        problems.append(f"CPU ids {list(ref_ids)} differ from reference.json greedy_tokens {list(reference_ids)}")
    return status, detail + ("; " + "; ".join(problems) if problems else ""), fields


def cmd_compare(args):
    rec = {"model": args.model, "transport": args.transport}
    cls, stages = (args.tol_class, "") if args.tol_class else plan_class(args.plan) if args.plan else (None, "no --plan")
    if cls is None:
        rec.update(status="FAIL", detail=f"no precision class: {stages}")
        return emit(args, rec)
    tol = args.tol if args.tol is not None else (args.tol_bf16 if cls == "bf16" else args.tol_fp32)
    rec.update(cls=cls, tol=tol, stages=stages)
    prompt = parse_ids(args.prompt)
    ref_ids = parse_ids(args.ref_ids) if args.ref_ids is not None else ids_from_stdout(args.ref_stdout)
    got_ids = parse_ids(args.got_ids) if args.got_ids is not None else ids_from_stdout(args.got_stdout)
    if not prompt:
        rec.update(status="FAIL", detail="no --prompt ids")
        return emit(args, rec)
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
    n_p = len(prompt)
    if ref.shape[0] != n_p + len(ref_ids) - 1:
        rec.update(status="FAIL", detail=f"CPU logits have {ref.shape[0]} rows, expected n_prompt + n - 1 = "
                                         f"{n_p + len(ref_ids) - 1}")
        return emit(args, rec)
    want = None
    if args.reference_json:
        want = json.load(open(args.reference_json)).get("greedy_tokens")
        if not want:
            rec.update(status="FAIL", detail=f"{args.reference_json} has no greedy_tokens")
            return emit(args, rec)
    rerun = strata_rerun(args.rerun[1:] if args.rerun[:1] == ["--"] else args.rerun, prompt, ref_ids, args.got_npy) \
        if args.rerun else None
    status, detail, fields = compare_verdict(ref, ref_ids, n_p, tol, (got_ids, got), rerun, args.require_peaked, want)
    rec.update(fields)
    rec.update(status=status, detail=f"{cls} " + detail, ids=",".join(map(str, got_ids)))
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
    problems = []
    if not ref.get("logits") or not ref.get("greedy_tokens"):
        rec.update(status="FAIL", detail=f"{args.reference_json} lacks logits or greedy_tokens")
        return emit(args, rec)
    want = np.array(ref["logits"], dtype=np.float64)
    n_p = want.shape[0]
    if a.shape[0] < n_p or a.shape[1] != want.shape[1]:
        rec.update(status="FAIL", detail=f"CPU logits {a.shape}, reference.json {want.shape}")
        return emit(args, rec)
    rel = float((np.abs(a[:n_p] - want).max(axis=1) / np.abs(want).max(axis=1)).max())
    if rel > args.tol:
        problems.append(f"prompt logits rel {rel:.2e} > {args.tol:g}")
    g = ref["greedy_tokens"]
    if ids != g:
        problems.append(f"ids {ids} != reference.json greedy_tokens {g}")
    detail = f"CPU engine vs transformers (reference.json): prompt logits rel {rel:.2e}"
    rec.update(status="FAIL" if problems else "PASS", rel_prefill=rel,
               detail=detail + ("; " + "; ".join(problems) if problems else f", {len(g)} greedy ids identical"))
    return emit(args, rec)


# ---------------------------------------------------------------- bench JSON

def number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)


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
    status, detail, fields = bench_verdict(data, args.check_memory, args.min_roofline, args.copy_gbps, args.model_dir)
    rec.update(fields)
    rec.update(status=status, detail=detail)
    if "missing" in fields:
        print("---- bench JSON (missing: " + ", ".join(fields["missing"]) + ") ----")
        print(json.dumps(data, indent=1)[:20000])
        print("----")
    return emit(args, rec)


def bench_verdict(data, check_memory, min_roofline, copy_gbps=None, model_dir=None):
    """(status, detail, fields) of a `strata bench --json` object (orchestrator/cmd_bench.c print_json)."""
    problems, notes, missing, fields = [], [], [], {}
    dec = data.get("decode_tok_s")
    if number(dec):
        fields["decode_tok_s"] = dec
        notes.append(f"decode {dec:.1f} tok/s")
    else:
        missing.append("decode_tok_s")
    if number(data.get("prefill_tok_s")):
        fields["prefill_tok_s"] = data["prefill_tok_s"]
        notes.append(f"prefill {data['prefill_tok_s']:.0f} tok/s")
    if "tokens_valid" not in data:
        missing.append("tokens_valid")
    elif data["tokens_valid"] is not True:
        problems.append("tokens_valid is false: the benchmark's generated tokens were invalid")
    if check_memory:
        devs = data.get("devices")
        gpus = [d for d in devs if isinstance(d, dict) and d.get("kind") == "cuda"] if isinstance(devs, list) else []
        if not gpus:
            missing.append("devices[] of kind cuda")
        mem = []
        for i, d in enumerate(gpus):
            label = d.get("device", f"devices[{i}]")
            used, est = d.get("mem_in_use_bytes"), d.get("mem_estimate_bytes")
            if not number(used):
                missing.append(f"{label} mem_in_use_bytes")
            if not number(est):
                missing.append(f"{label} mem_estimate_bytes")
            if not (number(used) and number(est)):
                continue
            lim = 0.05 * est + 256 * MIB
            s = (f"{label}: used {used / MIB:.0f} MiB vs plan {est / MIB:.0f} MiB "
                 f"(diff {(used - est) / MIB:+.0f}, limit ±{lim / MIB:.0f})")
            mem.append(dict(device=label, measured=used, estimate=est, limit=lim, ok=abs(used - est) <= lim))
            if abs(used - est) > lim:
                problems.append("memory outside 5% + 256 MiB: " + s)
            else:
                notes.append(s)
        fields["memory"] = mem
    if min_roofline is not None:
        roof = (data.get("roofline") or {}).get("fraction") if isinstance(data.get("roofline"), dict) else None
        if number(roof):
            fields["roofline"] = roof
            r = data["roofline"]
            notes.append(f"roofline {roof * 100:.1f}% (bench: {r.get('weight_bytes_per_token', 0) / 1e9:.2f} GB per token, "
                         f"{r.get('roofline_tok_s') or 0:.0f} tok/s at 100%)")
            if roof < min_roofline:
                notes.append(f"below the {min_roofline * 100:.0f}% target")
        else:
            missing.append("roofline.fraction")
            if number(dec) and copy_gbps and model_dir:   # what it would be, for the log; still a FAIL
                wb = safetensors_weight_bytes(model_dir)
                notes.append(f"(computed here: {dec * wb / (copy_gbps * 1e9) * 100:.1f}% from the torch copy bandwidth "
                             f"{copy_gbps:.0f} GB/s and {wb / 1e9:.2f} GB of weights)")
    status = "PASS"
    if problems or missing:
        status = "FAIL"
    elif min_roofline is not None and fields.get("roofline", 1.0) < min_roofline:
        status = "PERF"
    if missing:
        fields["missing"] = missing
        problems.append("missing or null in the bench JSON: " + ", ".join(missing))
    return status, "; ".join(problems + notes), fields


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
    bad = [r for r in recs if r["status"] in ("FAIL", "TIE")]
    if bad:
        print("\nFAIL and TIE in full:")
        for r in bad:
            print(f"{r['status']:6s} {r.get('part', '')} {r.get('case', '')}: {r.get('detail', '')}")
    tot = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    fails = counts.get("FAIL", 0) + (counts.get("TIE", 0) if args.strict_ties else 0)
    print(f"e2e: {len(recs)} checks: {tot or 'none'} -> {'FAILED' if fails else 'all correctness checks passed'}")
    if counts.get("TIE"):
        print("note: TIE = a greedy id flipped where the CPU's gap between its id and the run's is within 2 x tol of "
              "max|logit| (gap shown); every later row was still compared, teacher-forced from the CPU's ids; not a "
              "failure unless E2E_STRICT_TIES=1")
    return 1 if fails or not recs else 0


def cmd_selftest(args):
    import tempfile
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    model = os.path.join(root, "tests", "gpu", "models", "tiny-4l", "hf")
    rj = os.path.join(root, "tests", "gpu", "models", "tiny-4l", "reference.json")
    prompt = json.load(open(rj))["tokens"]
    fails, n_ok = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        res = os.path.join(tmp, "r.jsonl")
        base_cmd = [args.strata, "generate", "-m", model, "--cpu"]

        def gen(tag):
            npy, so = os.path.join(tmp, tag + ".npy"), os.path.join(tmp, tag + ".out")
            with open(so, "w") as f:
                r = subprocess.run(base_cmd + ["--tokens", ",".join(map(str, prompt)), "-n", "16", "--logits", npy],
                                   stdout=f, stderr=subprocess.PIPE, text=True)
            if r.returncode != 0:
                fails.append(f"strata generate rc {r.returncode}: {r.stderr.strip()[-300:]}")
            return npy, so

        a_npy, a_out = gen("a")
        b_npy, b_out = gen("b")
        if fails:
            print("\n".join(fails))
            return 1

        def expect(case, want, got, detail=""):
            nonlocal n_ok
            ok = got == want
            n_ok += ok
            print(f"{'ok  ' if ok else 'FAIL'} {case}: {got} (want {want}){': ' + detail[:260] if detail else ''}")
            if not ok:
                fails.append(case)

        def via_cli(case, want, fn, **kw):
            before = len(read_records(res))
            ns = argparse.Namespace(results=res, part="selftest", case=case, strict_ties=False, **kw)
            with open(os.devnull, "w") as dn:
                old, sys.stdout = sys.stdout, dn
                try:
                    fn(ns)
                finally:
                    sys.stdout = old
            got = read_records(res)[before:]
            expect(case, want, got[-1]["status"] if got else "none", got[-1].get("detail", "") if got else "")
            return got[-1] if got else {}

        via_cli("cpu vs transformers", "PASS", cmd_reference, npy=a_npy, ids=None, stdout=a_out, reference_json=rj,
                tol=1e-4, model="tiny-4l")
        ref = np.load(a_npy).astype(np.float64)
        ids = ids_from_stdout(a_out)
        n_p, N = len(prompt), len(ids)
        cli = dict(ref_npy=a_npy, ref_ids=None, ref_stdout=a_out, prompt=",".join(map(str, prompt)), plan=None,
                   tol=None, tol_fp32=TOL["fp32"], tol_bf16=TOL["bf16"], reference_json=None, model="", transport="",
                   require_peaked=False, rerun=[])
        via_cli("cpu twice bit-identical", "PASS", cmd_compare,
                **dict(cli, got_npy=b_npy, got_stdout=b_out, got_ids=None, tol_class="fp32", tol=0.0, reference_json=rj))
        bad_rj = os.path.join(tmp, "no-greedy.json")
        json.dump({k: v for k, v in json.load(open(rj)).items() if k != "greedy_tokens"}, open(bad_rj, "w"))
        via_cli("reference.json without greedy_tokens", "FAIL", cmd_reference, npy=a_npy, ids=None, stdout=a_out,
                reference_json=bad_rj, tol=1e-4, model="tiny-4l")
        via_cli("fewer ids than reference.json", "FAIL", cmd_reference, npy=a_npy, ids=",".join(map(str, ids[:3])),
                stdout=None, reference_json=rj, tol=1e-4, model="tiny-4l")

        # a real teacher-forced rerun: the free run's id 4 is planted wide (its row raised), the
        # rerun is the CPU engine from the CPU's ids: a FAIL, with every row compared
        x = ref.copy()
        r4 = n_p - 1 + 4
        other = int(np.argsort(ref[r4])[-6])
        x[r4, other] = ref[r4].max() + 0.5 * np.abs(ref[r4]).max()
        p = os.path.join(tmp, "flip.npy")
        np.save(p, x.astype(np.float32))
        g = list(ids)
        g[4] = other
        rec = via_cli("flipped token, rerun by strata", "FAIL", cmd_compare,
                      **dict(cli, got_npy=p, got_stdout=None, got_ids=",".join(map(str, g)), tol_class="bf16",
                             rerun=["--"] + base_cmd))
        expect("flipped token: every row compared after the flip", (ref.shape[0], 2),
               (rec.get("rows_compared"), rec.get("runs")))

        # planted verdicts through compare_verdict; rerun(i0) returns the given matrix and the CPU's ids
        scale = np.abs(ref).max(axis=1, keepdims=True)
        rng = np.random.default_rng(7)
        noise = rng.standard_normal(ref.shape) * scale

        def verdict(case, want, cpu, run, gids, tol, rerun_mat="same", peaked=False):
            rr = None
            if rerun_mat is not None:
                m = run if isinstance(rerun_mat, str) else rerun_mat
                rr = (lambda i0: (list(cpu_ids[i0:]), m, f"forced from id {i0}"))
            st, det, _ = compare_verdict(cpu, cpu_ids, n_p, tol, (list(gids), run), rr, peaked)
            expect(case, want, st, det)

        cpu_ids = ids
        bf, fp = TOL["bf16"], TOL["fp32"]
        verdict("fp32 noise 2e-5", "PASS", ref, ref + 2e-5 / 4 * noise, ids, fp)
        verdict("fp32 noise 1e-3", "FAIL", ref, ref + 1e-3 / 3 * noise, ids, fp)
        verdict("bf16 noise 5e-3", "PASS", ref, ref + 5e-3 / 4 * noise, ids, bf)
        verdict("bf16 noise 1e-1", "FAIL", ref, ref + 1e-1 / 3 * noise, ids, bf)
        x = ref.copy()
        x[3, 7] = np.nan
        verdict("NaN", "FAIL", ref, x, ids, bf)
        verdict("a row short", "FAIL", ref, ref[:-1], ids, bf)
        verdict("an id short", "FAIL", ref, ref, ids[:-1], bf)
        g = list(ids)
        g[2] = (g[2] + 1) % ref.shape[1]
        verdict("id not its row's argmax", "FAIL", ref, ref, g, bf, rerun_mat=ref)

        # a near tie planted in the CPU's row for id 7: its runner-up 1% of max|logit| below the top
        i = 7
        r = n_p - 1 + i
        top, second = int(np.argsort(ref[r])[-1]), int(np.argsort(ref[r])[-2])
        cpu = ref.copy()
        cpu[r, second] = ref[r, top] - 1e-2 * scale[r, 0]
        run = cpu.copy()                                   # the run's row prefers the runner-up by a hair
        run[r, top], run[r, second] = cpu[r, second], cpu[r, top]
        g = list(ids)
        g[i] = second
        verdict("near-tie flip bf16, later rows fine", "TIE", cpu, run, g, bf, rerun_mat=cpu)
        later = cpu.copy()
        later[r + 3] += 0.1 * scale[r + 3, 0] * np.sign(rng.standard_normal(ref.shape[1]))
        verdict("near-tie flip bf16, a later row off by 1e-1", "FAIL", cpu, run, g, bf, rerun_mat=later)
        verdict("near-tie flip bf16 without a rerun command", "FAIL", cpu, run, g, bf, rerun_mat=None)
        verdict("near-tie flip fp32", "FAIL", cpu, run, g, fp, rerun_mat=cpu)
        verdict("unpeaked model under --require-peaked", "FAIL", cpu, cpu, ids, bf, peaked=True)
        verdict("peaked model under --require-peaked", "PASS", ref, ref, ids, bf, peaked=True)
        j = 11
        rj_ = n_p - 1 + j
        far = int(np.argsort(ref[rj_])[-6])
        x = ref.copy()
        x[rj_, far] = ref[rj_].max() + 1.0
        g = list(ids)
        g[j] = far
        verdict("wide flip bf16", "FAIL", ref, x, g, bf, rerun_mat=ref)

        # plan JSON: a stage without kv_dtype gives no precision class
        pj = os.path.join(tmp, "plan.json")
        json.dump({"stages": [{"label": "gpu0", "layers": [0, 3], "precision": "bf16"}]}, open(pj, "w"))
        via_cli("plan JSON without kv_dtype", "FAIL", cmd_compare,
                **dict(cli, got_npy=b_npy, got_stdout=b_out, got_ids=None, tol_class=None, plan=pj))

        # bench JSON: a real CPU bench, its device relabelled as a GPU whose memory matches the estimate
        r = subprocess.run([args.strata, "bench", "-m", model, "--cpu", "--json", "--prompt-tokens", "16",
                            "--decode-tokens", "4", "--repeat", "1", "--bw-bytes", "8M"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            fails.append(f"strata bench rc {r.returncode}: {r.stderr.strip()[-300:]}")
        else:
            bench = json.loads(r.stdout)
            bench["devices"][0].update(kind="cuda", device="cuda:0", mem_in_use_bytes=bench["devices"][0]["mem_estimate_bytes"])

            def bench_case(case, want, edit, check_memory=True, min_roofline=0.0):
                d = json.loads(json.dumps(bench))
                edit(d)
                bj = os.path.join(tmp, "bench.json")
                json.dump(d, open(bj, "w"))
                via_cli(case, want, cmd_bench, json=bj, check_memory=check_memory, min_roofline=min_roofline,
                        copy_gbps=None, model_dir=None)

            bench_case("bench: all fields", "PASS", lambda d: None)
            bench_case("bench: memory in use missing", "FAIL", lambda d: d["devices"][0].pop("mem_in_use_bytes"))
            bench_case("bench: memory in use null", "FAIL", lambda d: d["devices"][0].update(mem_in_use_bytes=None))
            bench_case("bench: estimate missing", "FAIL", lambda d: d["devices"][0].pop("mem_estimate_bytes"))
            bench_case("bench: no GPU device", "FAIL", lambda d: d["devices"][0].update(kind="cpu"))
            bench_case("bench: memory 2x the estimate", "FAIL",
                       lambda d: d["devices"][0].update(mem_in_use_bytes=2 * d["devices"][0]["mem_estimate_bytes"] + 2 ** 30))
            bench_case("bench: roofline null", "FAIL", lambda d: d["roofline"].update(fraction=None))
            bench_case("bench: roofline missing", "FAIL", lambda d: d.pop("roofline"))
            bench_case("bench: roofline below target", "PERF", lambda d: d["roofline"].update(fraction=0.5),
                       min_roofline=0.8)
            bench_case("bench: decode tok/s missing", "FAIL", lambda d: d.pop("decode_tok_s"))
            bench_case("bench: tokens_valid false", "FAIL", lambda d: d.update(tokens_valid=False))
            bench_case("bench: tokens_valid missing", "FAIL", lambda d: d.pop("tokens_valid"))
    for f in fails:
        print("selftest FAIL: " + f)
    print(f"selftest: {'FAILED' if fails else 'ok'}")
    print(f"{n_ok} passed, {len(fails)} failed")
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
    c.add_argument("--prompt", required=True, help="the prompt ids, comma-separated")
    c.add_argument("--plan", help="`strata plan --format json` output: gives the precision class")
    c.add_argument("--tol-class", choices=sorted(TOL))
    c.add_argument("--tol", type=float, help="override the tolerance")
    c.add_argument("--tol-fp32", type=float, default=TOL["fp32"])
    c.add_argument("--tol-bf16", type=float, default=TOL["bf16"])
    c.add_argument("--reference-json", help="also require the CPU ids to be reference.json's greedy_tokens")
    c.add_argument("--require-peaked", action="store_true",
                   help="FAIL when the CPU's smallest greedy gap is inside the near-tie window 2 x tol")
    c.add_argument("--model", default="")
    c.add_argument("--transport", default="")
    c.add_argument("rerun", nargs=argparse.REMAINDER,
                   help="after --: the run's command without --tokens/-n/--logits, for teacher-forced reruns")
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
    b.add_argument("--copy-gbps", type=float, help="torch copy bandwidth (GB/s): the log shows the roofline it gives "
                                                    "when bench reports none (still a FAIL)")
    b.add_argument("--model-dir", help="with --copy-gbps: weight bytes from this model's safetensors")
    b.set_defaults(fn=cmd_bench)

    rc = sub.add_parser("record")
    common(rc)
    rc.add_argument("--status", required=True, choices=["PASS", "FAIL", "SKIP", "PERF", "INFO", "TIE", "PENDING"])
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
