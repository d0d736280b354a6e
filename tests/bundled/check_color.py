#!/usr/bin/env python3
"""Colour on a terminal and NO_COLOR (https://no-color.org): strata colours
"error:"/"hint:" (stderr) and `inventory`'s headings (stdout) only when the
stream is a terminal and NO_COLOR is unset or empty.

    python3 tests/bundled/check_color.py STRATA

Runs each command on a pseudo-terminal (Python's pty, stdout and stderr both
on it) and through pipes: on the terminal the output must hold ANSI escapes
when NO_COLOR is unset or empty and none when NO_COLOR=1; through pipes, none
ever. With the escapes removed, the terminal's text must equal the piped text
(colour adds nothing else; digits are masked, as inventory's free memory moves).
"""
import os
import pty
import re
import select
import subprocess
import sys

ESC = re.compile(r"\x1b\[[0-9;]*m")
DIGITS = re.compile(r"[0-9]")


def on_pty(cmd, env):
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(cmd[0], cmd, env)
    out = b""
    while True:
        try:
            r, _, _ = select.select([fd], [], [], 30)
        except InterruptedError:
            continue
        if not r:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:         # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    os.close(fd)
    return out.decode(errors="replace").replace("\r\n", "\n")


def piped(cmd, env):
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return r.stdout


def main():
    strata = sys.argv[1]
    base = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    base["TERM"] = "xterm"
    cmds = [("an error and its hint (stderr)", [strata, "generate", "-m", "no/such/model", "--tokens", "1"]),
            ("inventory headings (stdout)", [strata, "inventory"])]
    fails, n = [], 0
    for what, cmd in cmds:
        plain = piped(cmd, base)
        for label, extra, want_color in (("NO_COLOR unset", {}, True), ("NO_COLOR=''", {"NO_COLOR": ""}, True),
                                         ("NO_COLOR=1", {"NO_COLOR": "1"}, False)):
            env = dict(base, **extra)
            tty = on_pty(cmd, env)
            has = bool(ESC.search(tty))
            same = DIGITS.sub("#", ESC.sub("", tty)) == DIGITS.sub("#", plain)   # free memory moves
            ok = has == want_color and same
            n += 1
            print(f"{'ok  ' if ok else 'FAIL'} {what}, terminal, {label}: escapes {'present' if has else 'absent'} "
                  f"(want {'present' if want_color else 'absent'}), text {'equals' if same else 'differs from'} the piped run")
            if not ok:
                fails.append(f"{what} {label}")
                print(f"     terminal {tty[:300]!r}\n     piped    {plain[:300]!r}")
        n += 1
        if ESC.search(plain) or "error" not in plain and "cpu" not in plain:
            fails.append(f"{what} piped")
            print(f"FAIL {what}, piped: {plain[:300]!r}")
        else:
            print(f"ok   {what}, piped (NO_COLOR unset): no escapes")
    print(f"{n - len(fails)} passed, {len(fails)} failed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
