#!/usr/bin/env python3
"""`strata plan --svg FILE` through the CLI: the drawing is well-formed SVG and
shows the plan that `strata plan --format json` prints for the same deployment.

    python3 tests/bundled/check_svg.py STRATA

For each deployment (two CPU stages, tests/bench/two-cpu-stages.yaml; the model
on the CPU alone; a what-if Tesla M40 from the catalog): the file parses as XML
(xml.etree) with an <svg> root whose width/height/viewBox agree; one layer box
per model layer, titled with the stage that holds it, that together span the
layer bar without gaps or overlaps; one stage group per stage naming its device
label, its layer range, its precision, attention and KV dtype; one link per hop;
one memory bar per device; the title names the model and the device count.
Then the errors: a file that cannot be written (exit 1, the path and a hint),
--svg without a file name (exit 2) and --svg with --check (exit 2).
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"


def run(cmd):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def texts(el):
    return [t.text or "" for t in el.iter(NS + "text")]


def check(strata, name, args, tmp):
    problems = []
    svg = os.path.join(tmp, name + ".svg")
    r = run([strata, "plan"] + args + ["--svg", svg])
    if r.returncode != 0:
        return [f"plan --svg exit {r.returncode}: {r.stderr.strip()[-300:]}"]
    j = run([strata, "plan"] + args + ["--format", "json"]).stdout
    plan = json.loads(j[j.index("{"): j.rindex("}") + 1])
    try:
        root = ET.parse(svg).getroot()
    except ET.ParseError as e:
        return [f"{svg} is not well-formed XML: {e}"]
    if root.tag != NS + "svg":
        return [f"root element {root.tag}, want svg"]
    w, h = float(root.get("width")), float(root.get("height"))
    if root.get("viewBox") != f"0 0 {root.get('width')} {root.get('height')}":
        problems.append(f"viewBox {root.get('viewBox')} vs width {w} height {h}")
    all_text = " | ".join(texts(root))
    n_layer, stages = plan["model"]["n_layer"], plan["stages"]
    if not re.search(rf"{re.escape(plan['model']['name'])} .* on {len(plan['devices'])} devices?", all_text):
        problems.append(f"no title naming {plan['model']['name']} on {len(plan['devices'])} device(s): {all_text[:200]}")
    # layer boxes: one per layer, titled with its stage, contiguous across the bar
    layers = [r_ for r_ in root.iter(NS + "rect") if r_.get("class") == "layer"]
    if len(layers) != n_layer:
        problems.append(f"{len(layers)} layer boxes, the model has {n_layer} layers")
    x = None
    for i, box in enumerate(layers):
        want_stage = next(k for k, s in enumerate(stages) if s["layers"][0] <= i <= s["layers"][1])
        title = box.find(NS + "title")
        if title is None or title.text != f"layer {i}: stage {want_stage}":
            problems.append(f"layer box {i} is titled {title.text if title is not None else None!r}, "
                            f"want 'layer {i}: stage {want_stage}'")
        x0, bw = float(box.get("x")), float(box.get("width"))
        if bw <= 0 or x0 < 0 or x0 + bw > w + 1e-6 or (x is not None and abs(x0 - x) > 0.01):
            problems.append(f"layer box {i} at x {x0} width {bw} (previous ended at {x}, drawing width {w})")
        x = x0 + bw
    # stage groups
    groups = [g for g in root.iter(NS + "g") if g.get("class") == "stage"]
    if len(groups) != len(stages):
        problems.append(f"{len(groups)} stage groups, the plan has {len(stages)} stages")
    for k, (g, s) in enumerate(zip(groups, stages)):
        t = " | ".join(texts(g))
        lay = f"layers {s['layers'][0]}-{s['layers'][1]}"
        want = [f"stage {k}: {s['label']}", lay, f"{s['precision']}, {s['attention']} attention, KV {s['kv_dtype']}"]
        miss = [x for x in want if x not in t]
        if miss or g.get("data-device") != s["label"]:
            problems.append(f"stage {k} group (device {g.get('data-device')!r}) lacks {miss}: {t}")
    links = [g for g in root.iter(NS + "g") if g.get("class") == "link"]
    if len(links) != len(plan["hops"]):
        problems.append(f"{len(links)} links drawn, the plan has {len(plan['hops'])} hops")
    bars = [g for g in root.iter(NS + "g") if g.get("class") == "membar"]
    labels = sorted({s["label"] for s in stages})
    if sorted(g.get("data-device") for g in bars) != labels:
        problems.append(f"memory bars for {sorted(g.get('data-device') for g in bars)}, devices in use {labels}")
    return problems


def main():
    strata = sys.argv[1]
    cases = [("two-cpu-stages", ["-c", "tests/bench/two-cpu-stages.yaml"]),
             ("cpu", ["-m", "models/tiny-kjv", "--cpu"]),
             ("what-if-m40", ["-c", "tests/bundled/what-if-tiny.yaml"])]
    fails, n = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in cases:
            n += 1
            p = check(strata, name, args, tmp)
            print(f"{'ok  ' if not p else 'FAIL'} plan {' '.join(args)} --svg" + "".join("\n     " + x for x in p))
            if p:
                fails.append(name)
        for name, args, rc, want in (
                ("unwritable", ["-c", "tests/bench/two-cpu-stages.yaml", "--svg", os.path.join(tmp, "no", "x.svg")], 1,
                 [os.path.join(tmp, "no", "x.svg") + ": cannot write", "hint:"]),
                ("no file name", ["-c", "tests/bench/two-cpu-stages.yaml", "--svg"], 2, ["--svg needs a file name"]),
                ("with --check", ["-c", "tests/bench/two-cpu-stages.yaml", "--check", "--svg", os.path.join(tmp, "c.svg")],
                 2, ["--check validates only"])):
            n += 1
            r = run([strata, "plan"] + args)
            out = r.stdout + r.stderr
            ok = r.returncode == rc and all(w in out for w in want)
            print(f"{'ok  ' if ok else 'FAIL'} plan --svg {name}: exit {r.returncode} (want {rc})"
                  + ("" if ok else f", output lacks {[w for w in want if w not in out]}: {out[-300:]!r}"))
            if not ok:
                fails.append(name)
    print(f"{n - len(fails)} passed, {len(fails)} failed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
