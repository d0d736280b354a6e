#!/usr/bin/env python3
"""The body of tests/harness/plant.sh: runs $PLANT_STRATA with the arguments
given, after planting the defect named by $PLANT. The checks' selftests
(tests/*/tests.cmake, through tests/harness/expect_fail.sh) run a check with
this stand-in and require that it fails.

Defects (only `generate` is touched; every other command runs unchanged; PLANT=none
plants nothing, for a selftest whose defect is in its input, not in strata):
  drop-plan    --plan FILE is ignored (the deployment is planned afresh)
  drop-stop    --stop TEXT is ignored
  wrong-stop   --stop TEXT stops at the first half of TEXT (a stop one token early
               where TEXT spans tokens)
  drop-system  --system TEXT is ignored (the config's or the template's system prompt wins)
  flip-token   a run on a device (no --cpu) with --tokens: the id generated at
               sequence position 16 (generated id 4 after a 12-token prompt; a
               teacher-forced rerun whose prompt already covers it is left alone)
               becomes its row's 6th-ranked token, and with --logits that row is
               raised so the new id is its argmax (a real, wide greedy flip)
"""
import os
import subprocess
import sys

FLIP_POSITION = 16


def drop(args, opt, keep_value=None):
    out, i = [], 0
    while i < len(args):
        if args[i] == opt and i + 1 < len(args):
            if keep_value is not None:
                out += [opt, keep_value(args[i + 1])]
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def value(args, opt):
    for i, a in enumerate(args[:-1]):
        if a == opt:
            return args[i + 1]
    return None


def flip(real, args):
    r = subprocess.run([real] + args, stdout=subprocess.PIPE)
    if r.returncode != 0:
        sys.stdout.buffer.write(r.stdout)
        return r.returncode
    lines = r.stdout.decode().splitlines()
    k = max(i for i, ln in enumerate(lines) if ln.strip() and all(t.isdigit() for t in ln.strip().split(",")))
    ids = [int(t) for t in lines[k].split(",")]
    n_prompt = len(value(args, "--tokens").split(","))
    j = FLIP_POSITION - n_prompt
    if 0 <= j < len(ids):
        npy = value(args, "--logits")
        if npy:
            import numpy as np
            a = np.load(npy)
            row = n_prompt - 1 + j
            other = int(np.argsort(a[row])[-6])
            a[row, other] = a[row].max() + 0.5 * np.abs(a[row]).max()
            np.save(npy, a)
        else:
            other = (ids[j] + 1) % 7
        ids[j] = other
        lines[k] = ",".join(map(str, ids))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def main():
    defect = os.environ.get("PLANT", "")
    real = os.environ.get("PLANT_STRATA", "")
    if not real:
        print("plant.sh: set PLANT_STRATA to the real strata binary", file=sys.stderr)
        return 2
    args = sys.argv[1:]
    sub = next((a for a in args if not a.startswith("-")), "")
    if sub == "generate":
        if defect == "drop-plan":
            args = drop(args, "--plan")
        elif defect == "drop-stop":
            args = drop(args, "--stop")
        elif defect == "wrong-stop":
            args = drop(args, "--stop", keep_value=lambda t: t[:(len(t) + 1) // 2])
        elif defect == "drop-system":
            args = drop(args, "--system")
        elif defect == "flip-token":
            if "--tokens" in args and "--cpu" not in args:
                sys.stdout.flush()
                return flip(real, args)
        elif defect and defect != "none":
            print(f"plant.sh: unknown defect PLANT={defect}", file=sys.stderr)
            return 2
    os.execv(real, [real] + args)


if __name__ == "__main__":
    sys.exit(main())
