#!/usr/bin/env python3
"""strata serve under mpirun: the HTTP server on rank 0, the stages on ranks
0 and 1 (CPU), micro-batches in flight across the ranks (throughput
objective). Plain HTTP from the standard library.

  serve.py STRATA_BINARY

Checks (PASS/FAIL lines; exit 1 on any failure):
  - 12 concurrent completions each get exactly the greedy ids of a
    one-process `strata generate --tokens`;
  - the metrics show batched steps and both stages' busy time;
  - a streamed chat completion arrives in pieces and ends with [DONE];
  - SIGTERM to mpirun ends every rank within 30 s.
"""
import http.client
import json
import re
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

STRATA = os.path.abspath(sys.argv[1])
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = "tiny-kjv"
failures = []
passes = []
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,vader,tcp"]


def check(cond, what):
    print(("PASS " if cond else "FAIL ") + what, flush=True)
    (passes if cond else failures).append(what)


def generate_ids(ids, n):
    out = subprocess.run([STRATA, "generate", "-m", os.path.join(ROOT, "models/tiny-kjv"), "--cpu", "--threads", "1",
                          "--tokens", ",".join(map(str, ids)), "-n", str(n)], capture_output=True, text=True,
                         check=True).stdout
    return [int(x) for x in out.strip().split(",")]


def tokenize(text):
    out = subprocess.run([STRATA, "tokenize", "-m", os.path.join(ROOT, "models/tiny-kjv")], input=text,
                         capture_output=True, text=True, check=True).stdout
    return [int(x) for x in out.replace(",", " ").split()]


def request(port, method, path, body=None, stream=False):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request(method, path, json.dumps(body).encode() if body is not None else None,
              {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read().decode()
    c.close()
    return r.status, (data if stream else json.loads(data) if data.startswith("{") else data)


def main():
    tmp = tempfile.mkdtemp(prefix="strata-mpi-serve-")
    cfg = os.path.join(tmp, "deploy.yaml")
    with open(cfg, "w") as f:
        f.write(f"""version: 1
model: {{path: "{ROOT}/models/tiny-kjv"}}
devices:
  - {{device: cpu, name: here, threads: 1}}
  - {{device: cpu, name: there, threads: 1, rank: 1}}
placement:
  strategy: manual
  objective: throughput
  manual:
    - {{device: here, layers: 0-1}}
    - {{device: there, layers: 2-3}}
context: 256
batch: 8
generation: {{chat_template: chatml}}
""")
    port_file = os.path.join(tmp, "port")
    # under AddressSanitizer: reports to files; Open MPI's own leaks (unloaded plugins) are not strata's
    ENV["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "log_path=" + os.path.join(tmp, "san")]))
    ENV["LSAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("LSAN_OPTIONS"), "exitcode=0"]))
    err = open(os.path.join(tmp, "stderr"), "w+")
    p = subprocess.Popen(MPIRUN + ["-np", "2", STRATA, "serve", "-c", cfg, "--port", "0", "--port-file", port_file],
                         stdout=subprocess.DEVNULL, stderr=err, env=ENV)
    t0 = time.time()
    while not (os.path.exists(port_file) and open(port_file).read().strip()):
        if p.poll() is not None or time.time() - t0 > 60:
            err.seek(0)
            print(err.read())
            check(False, "the server under mpirun starts")
            p.kill()
            return
        time.sleep(0.05)
    port = int(open(port_file).read())
    try:
        prompts = ["In the beginning", "And God said", "Blessed are", "The LORD is my shepherd"]
        cases = [(tokenize(prompts[i % 4] + " " * (i // 4)), 5 + i % 6) for i in range(12)]
        want = [generate_ids(ids, n) for ids, n in cases]
        got = [None] * len(cases)
        errs = []

        def client(i):
            try:
                ids, n = cases[i]
                st, j = request(port, "POST", "/v1/completions", {"model": MODEL, "prompt": ids, "max_tokens": n,
                                                                   "temperature": 0, "ignore_eos": True,
                                                                   "return_token_ids": True})
                got[i] = j["choices"][0]["token_ids"] if st == 200 else j
            except Exception as ex:  # noqa: BLE001
                errs.append(repr(ex))

        ts = [threading.Thread(target=client, args=(i,)) for i in range(len(cases))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        same = sum(1 for a, b in zip(got, want) if a == b)
        check(not errs and same == len(cases),
              f"{len(cases)} concurrent clients across 2 ranks: {same} get the one-process greedy ids {errs[:1]}")
        for i, (a, b) in enumerate(zip(got, want)):
            if a != b:
                print(f"  client {i}: got {a} want {b}")
                break
        st, metrics = request(port, "GET", "/metrics", stream=True)
        steps = tokens = 0.0
        busy = {}
        for line in metrics.splitlines():
            if line.startswith("strata_decode_steps_total "):
                steps = float(line.split()[-1])
            if line.startswith("strata_generated_tokens_total ") or line.startswith("strata_completion_tokens_total "):
                tokens = float(line.split()[-1])
            if line.startswith("strata_stage_busy_seconds_total{"):
                busy[line.split("{")[1].split("}")[0]] = float(line.split()[-1])
        check(st == 200 and 0 < steps < sum(n for _, n in cases),
              f"batched decode steps across ranks: {steps:.0f} steps for {sum(n for _, n in cases)} tokens")
        check(len(busy) == 2 and all(v > 0 for v in busy.values()), f"both stages report busy time: {busy}")
        st, text = request(port, "POST", "/v1/chat/completions",
                           {"model": MODEL, "messages": [{"role": "user", "content": "Who made the light?"}],
                            "max_tokens": 12, "temperature": 0, "stream": True}, stream=True)
        chunks = [l for l in text.splitlines() if l.startswith("data: ")]
        check(st == 200 and len(chunks) > 3 and chunks[-1] == "data: [DONE]",
              f"a streamed chat completion across ranks: {len(chunks)} events")
    finally:
        t0 = time.time()
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = "hung"
        err.seek(0)
        log = err.read()
        left = subprocess.run(["pgrep", "-f", f"{STRATA} serve -c {cfg}"], capture_output=True, text=True).stdout.split()
        check(rc != "hung" and not left, f"SIGTERM to mpirun: every rank ended in {time.time() - t0:.1f}s (exit {rc})")
        ours = []
        for name in sorted(os.listdir(tmp)):
            if name.startswith("san."):
                text = open(os.path.join(tmp, name)).read()
                if re.search(r"ERROR: AddressSanitizer|runtime error:", text) or \
                        re.search(r" in (st_|pl_|main |run )|/(orchestrator|devices|planner|model|base|kernels)/[a-z_]+\.c", text):
                    ours.append(text[:3000])
        check(not ours, "no sanitizer report through strata code" + ("\n" + ours[0] if ours else ""))
        if failures:
            print(log[-3000:])
    print(f"{len(passes)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


main()
