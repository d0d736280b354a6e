#!/usr/bin/env python3
"""`strata generate --chat` at a terminal (a pseudo-terminal, as a person in
tmux would have): the banner names the template, two turns each end at a new
prompt, Ctrl-C during a long reply stops the reply (not the program) and the
chat goes on, Ctrl-C at the prompt asks for /exit, /reset and /save work, and
/exit ends it with exit 0.

  chat_tty.py STRATA
"""
import json
import os
import pty
import select
import signal
import sys
import tempfile
import time

STRATA = os.path.abspath(sys.argv[1])
failures = []


def check(cond, what):
    print(("PASS " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


class Tty:
    def __init__(self, argv):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ["NO_COLOR"] = "1"
            os.execv(argv[0], argv)
        self.buf = b""

    def read_until(self, pattern, timeout=30):
        """Reads until pattern (bytes) appears after what was consumed; returns the text read."""
        t0 = time.time()
        while pattern not in self.buf:
            left = timeout - (time.time() - t0)
            if left <= 0:
                raise TimeoutError(f"waited for {pattern!r}; the terminal shows:\n{self.buf.decode(errors='replace')}")
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise EOFError(f"the program ended while waiting for {pattern!r}:\n{self.buf.decode(errors='replace')}")
                self.buf += chunk
        i = self.buf.index(pattern) + len(pattern)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out.decode(errors="replace")

    def send(self, text):
        os.write(self.fd, text.encode())

    def wait(self, timeout=30):
        t0 = time.time()
        while time.time() - t0 < timeout:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            try:
                if select.select([self.fd], [], [], 0.1)[0]:
                    self.buf += os.read(self.fd, 4096)
            except OSError:
                pass
        os.kill(self.pid, signal.SIGKILL)
        return "hung"


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    save = os.path.join(tempfile.mkdtemp(prefix="strata-tty-"), "chat.json")
    t = Tty([STRATA, "generate", "-c", "tests/bundled/chat-chatml.yaml", "--chat", "-n", "2000", "--ctx", "8192",
             "--temp", "0.8", "--seed", "3"])
    banner = t.read_until(b"> ")
    check("template: chatml" in banner and "/help" in banner, "the banner names the template and the commands")
    t.send("Who made the heaven?\r")
    turn1 = t.read_until(b"\n> ", timeout=240)
    check(len(turn1.strip()) > len("Who made the heaven?"), "turn 1: a reply, then a new prompt")
    t.send("And the earth?\r")
    t.read_until(b"And the earth?")
    t.read_until(b"\n> ", timeout=240)
    check(True, "turn 2: a reply, then a new prompt")
    # a long reply, interrupted as soon as it starts
    # a long reply (up to 2000 tokens: a second or more), interrupted as soon as it starts
    t.send("Tell me everything.\r")
    t.read_until(b"Tell me everything.")
    first = b""
    while len(first.strip()) < 3:
        r, _, _ = select.select([t.fd], [], [], 30)
        first += os.read(t.fd, 4096) if r else b""
    t.send("\x03")   # Ctrl-C: the terminal sends SIGINT to the program
    stopped = t.read_until(b"> ", timeout=30)
    check("[reply stopped]" in stopped, "Ctrl-C during a reply stops the reply, and the chat goes on")
    t.send("\x03")
    at_prompt = t.read_until(b"> ", timeout=10)
    check("/exit" in at_prompt, "Ctrl-C at the prompt says how to leave")
    # Ctrl-C typed the instant the prompt appears (no gap in which it is lost)
    for _ in range(20):
        t.send("\x03")
        t.read_until(b"> ", timeout=10)
    check(True, "Ctrl-C the instant the prompt appears, 20 times: a new prompt each time")
    t.send("/help\r")
    check("/save" in t.read_until(b"> ", timeout=10), "/help lists the commands")
    t.send(f"/save {save}\r")
    t.read_until(b"> ", timeout=10)
    msgs = json.load(open(save))["messages"] if os.path.exists(save) else []
    check(len(msgs) >= 3 and msgs[0]["role"] == "system" and msgs[-2] == {"role": "user", "content": "Tell me everything."}
          and msgs[-1]["role"] == "assistant", f"/save writes the conversation: the system prompt first, the stopped "
          f"reply last ({len(msgs)} messages)")
    t.send("/reset\r")
    check("reset" in t.read_until(b"> ", timeout=10), "/reset")
    t.send("/exit\r")
    rc = t.wait()
    check(rc == 0, f"/exit ends the chat with exit 0 (got {rc})")
    print(f"{'FAILED' if failures else 'ok'}: {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
