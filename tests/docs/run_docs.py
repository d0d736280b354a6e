#!/usr/bin/env python3
"""Runs every command that README.md and docs/*.md show as runnable, so the
documentation cannot drift from the program (docs_commands in ctest).

The convention (README.md, "Documentation that runs"):

* A fenced block marked ```sh holds commands that run as written from the
  repository root, one per line (a line ending in a backslash continues).
  Blank lines and lines starting with '#' are skipped. `strata` is the binary
  under test (its directory comes first on PATH).
* A trailing comment (' # ...') may carry markers:
    exits N            the command must exit with N (default 0)
    needs a GPU / needs N GPUs
                       run only where the build has CUDA and the machine that
                       many GPUs; otherwise skipped with the reason printed
    needs MPI, needs a server
                       skipped with the reason printed
    needs your model   skipped: a model the user brings; a '-c FILE' in the
                       command is checked with 'strata plan -c FILE --check'
    skip: REASON       skipped with REASON printed (the build and test
                       scripts themselves: they would run this test again)
  Skipped commands that name '-c FILE' are always checked that way.
* A fenced block marked ```text is a synopsis or output: never run.
* A `strata` command in an indented (4-space) code block is an error: it
  must say whether it runs (```sh) or not (```text).
* A fenced block marked ```yaml FILE shows FILE verbatim: it must equal it.

Commands run in order, in a scratch directory that mirrors the repository
root (a symlink per top-level entry), so files they write (plan.svg, out.npy)
stay out of the source tree and later commands see earlier ones' files. HOME
is the scratch directory (strata inventory --probe saves its profile under
~/.cache), stdin is /dev/null, NO_COLOR is set.

usage: run_docs.py STRATA REPO_ROOT [--list] [FILE.md ...]
       run_docs.py --selftest STRATA REPO_ROOT
Exits 1 when any command fails or a rule is broken.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

TIMEOUT_S = 600
MIN_README_COMMANDS = 15   # the README's runnable commands (a lower bound against an emptied README)

FENCE = re.compile(r'^(\s*)```\s*([^\s`]*)\s*(.*)$')


class Command:
    def __init__(self, path, line, text, comment):
        self.path, self.line, self.text, self.comment = path, line, text, comment
        self.expect = 0
        self.needs_gpus = 0
        self.skip = None          # reason, for markers that always skip
        m = re.search(r'\bexits (\d+)\b', comment)
        if m:
            self.expect = int(m.group(1))
        m = re.search(r'\bneeds (a|one|\d+) GPUs?\b', comment)
        if m:
            self.needs_gpus = 1 if m.group(1) in ('a', 'one') else int(m.group(1))
        if re.search(r'\bneeds MPI\b', comment):
            self.skip = 'needs MPI'
        elif re.search(r'\bneeds a server\b', comment):
            self.skip = 'needs a server'
        elif re.search(r'\bneeds\b.*\byour model\b', comment):
            self.skip = 'needs a model you bring'
        m = re.search(r'\bskip: ([^)]*)', comment)
        if m and not self.skip:
            self.skip = m.group(1).strip()

    def where(self):
        return '%s:%d' % (self.path, self.line)

    def config(self):
        """The -c/--config FILE of the command, or None."""
        try:
            words = shlex.split(self.text)
        except ValueError:
            return None
        for i, w in enumerate(words[:-1]):
            if w in ('-c', '--config'):
                return words[i + 1]
        return None


def split_comment(line):
    """'cmd args  # comment' -> ('cmd args', 'comment'); a '#' inside quotes is not a comment."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in '"\'':
            quote = ch
        elif ch == '#' and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ''


def parse(path, text):
    """Commands of the ```sh blocks, problems (lint), and ```yaml FILE blocks."""
    cmds, problems, files = [], [], []
    lines = text.split('\n')
    in_fence = None        # (language, argument, first line) while inside a fence
    body = []
    prev_blank = True
    in_indented = False
    pending = None         # a continued command: (first line number, text)
    for n, raw in enumerate(lines, 1):
        m = FENCE.match(raw)
        if in_fence is None and m:
            in_fence = (m.group(2).lower(), m.group(3).strip(), n)
            body = []
            in_indented = False
            continue
        if in_fence is not None:
            if m and not m.group(2):
                lang, arg, start = in_fence
                if lang == 'yaml' and arg:
                    files.append((start, arg, '\n'.join(body) + '\n'))
                if pending:
                    problems.append('%s:%d: a command ends in a backslash at the end of its block' % (path, pending[0]))
                    pending = None
                in_fence = None
                continue
            body.append(raw)
            if in_fence[0] != 'sh':
                continue
            line = raw.strip()
            if pending:
                start, acc = pending
                line = acc + ' ' + line
                n_first = start
            else:
                n_first = n
                if not line or line.startswith('#'):
                    continue
            if line.endswith('\\'):
                pending = (n_first, line[:-1].rstrip())
                continue
            pending = None
            cmd, comment = split_comment(line)
            cmds.append(Command(path, n_first, cmd, comment))
            continue
        # outside fences: indented code blocks must not hold strata commands
        blank = not raw.strip()
        if raw.startswith('    ') and (prev_blank or in_indented):
            in_indented = True
            stripped = raw.strip()
            if re.match(r'^(\$ )?(strata|mpirun)\b', stripped) or re.search(r'\|\s*strata\b', stripped):
                problems.append('%s:%d: a strata command in an indented code block: put it in a ```sh block '
                                '(it runs in the docs test) or a ```text block (a synopsis, not run): %s'
                                % (path, n, stripped))
        elif not blank:
            in_indented = False
        prev_blank = blank
    if in_fence is not None:
        problems.append('%s:%d: the code block never closes' % (path, in_fence[2]))
    return cmds, problems, files


def gpu_count(strata, env):
    try:
        out = subprocess.run([strata, 'inventory', '--json'], env=env, capture_output=True, text=True,
                             timeout=120, stdin=subprocess.DEVNULL)
        devs = json.loads(out.stdout).get('devices', [])
        return sum(1 for d in devs if d.get('kind') == 'cuda')
    except Exception as e:   # a broken inventory is reported by the commands that use it
        print('docs: cannot count GPUs (%s); GPU commands are skipped' % e)
        return 0


def mirror(repo, scratch):
    for name in os.listdir(repo):
        if name.startswith('build') or name in ('.git', 'bin'):
            continue
        os.symlink(os.path.join(repo, name), os.path.join(scratch, name))
    os.makedirs(os.path.join(scratch, 'bin'))
    return os.path.join(scratch, 'bin')


def run_all(strata, repo, md_files, list_only=False, out=print):
    """Returns (failures, ran, skipped) after running every command of md_files."""
    failures, ran, skipped = [], 0, 0
    all_cmds, readme_cmds = [], 0
    for rel in md_files:
        path = os.path.join(repo, rel)
        with open(path, encoding='utf-8') as f:
            text = f.read()
        cmds, problems, files = parse(rel, text)
        failures += problems
        for start, fname, content in files:
            fpath = os.path.join(repo, fname)
            if not os.path.isfile(fpath):
                failures.append('%s:%d: ```yaml %s: no such file' % (rel, start, fname))
                continue
            with open(fpath, encoding='utf-8') as f:
                if f.read() != content:
                    failures.append('%s:%d: the block differs from %s: copy the file into the block' % (rel, start, fname))
        all_cmds += cmds
        if os.path.basename(rel) == 'README.md':
            readme_cmds += len(cmds)
    if list_only:
        for c in all_cmds:
            out('%s: %s%s' % (c.where(), c.text, '   # ' + c.comment if c.comment else ''))
        return failures, 0, 0
    if 'README.md' in [os.path.basename(f) for f in md_files] and readme_cmds < MIN_README_COMMANDS:
        failures.append('README.md: only %d runnable commands (```sh blocks); expected at least %d'
                        % (readme_cmds, MIN_README_COMMANDS))
    scratch = tempfile.mkdtemp(prefix='strata-docs-')
    try:
        bindir = mirror(repo, scratch)
        os.symlink(os.path.abspath(strata), os.path.join(bindir, 'strata'))
        env = dict(os.environ)
        env['PATH'] = bindir + os.pathsep + env.get('PATH', '')
        env['HOME'] = scratch
        env['NO_COLOR'] = '1'
        for k in ('STRATA_PROFILE', 'XDG_CACHE_HOME'):
            env.pop(k, None)
        n_gpu = None
        for c in all_cmds:
            reason = c.skip
            if not reason and c.needs_gpus:
                if n_gpu is None:
                    n_gpu = gpu_count(strata, env)
                if n_gpu < c.needs_gpus:
                    reason = 'needs %d GPU%s, this machine shows %d' % (c.needs_gpus, 's' if c.needs_gpus > 1 else '', n_gpu)
            if reason:
                skipped += 1
                cfg = c.config()
                check = ''
                if cfg:
                    r = subprocess.run(['strata', 'plan', '-c', cfg, '--check'], cwd=scratch, env=env,
                                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=TIMEOUT_S)
                    check = '; plan -c %s --check: exit %d' % (cfg, r.returncode)
                    if r.returncode != 0:
                        failures.append('%s: skipped (%s), but its config does not pass --check: %s\n%s'
                                        % (c.where(), reason, cfg, (r.stdout + r.stderr).strip()))
                out('skip %s: %s  (%s%s)' % (c.where(), c.text, reason, check))
                continue
            t0 = time.time()
            try:
                r = subprocess.run(['bash', '-o', 'pipefail', '-c', c.text], cwd=scratch, env=env,
                                   capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=TIMEOUT_S,
                                   errors='replace')
                rc, output = r.returncode, r.stdout + r.stderr
            except subprocess.TimeoutExpired:
                rc, output = 'timeout after %d s' % TIMEOUT_S, ''
            ran += 1
            secs = time.time() - t0
            if rc != c.expect:
                tail = output if len(output) < 3000 else '...' + output[-3000:]
                failures.append('%s: %s\n  exit %s, the docs say %d%s\n%s'
                                % (c.where(), c.text, rc, c.expect,
                                   '' if c.expect else ' (mark an expected failure with "# exits N")', tail.rstrip()))
                out('FAIL %s: %s (exit %s, %.1f s)' % (c.where(), c.text, rc, secs))
            else:
                out('ok   %s: %s (exit %s, %.1f s)' % (c.where(), c.text, rc, secs))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return failures, ran, skipped


def selftest(strata, repo):
    """The checker finds what it must: planted docs with one defect each."""
    planted = {
        'ok.md': '# fine\n\n```sh\nstrata --version\nstrata plan --ctx 0   # exits 2: the message gives the range\n'
                 'strata --version \\\n  --json   # a continued line\n```\n\n```text\nstrata bench -m MODEL [...]\n```\n',
        'unannounced.md': '```sh\nstrata plan --ctx 0\n```\n',
        'wrong-code.md': '```sh\nstrata --version   # exits 2\n```\n',
        'indented.md': 'text\n\n    strata inventory            # not marked\n',
        'piped.md': 'text\n\n    echo 1 | strata detokenize\n',
        'missing-file.md': '```sh\nstrata plan -c no/such.yaml --check\n```\n',
        'skip-bad-config.md': '```sh\nstrata generate -c no/such.yaml -p hi   # needs your model\n```\n',
        'skip-ok.md': '```sh\nstrata generate -c configs/examples/two-gpus.yaml -p hi   # needs 2 GPUs and your model\n'
                      'mpirun -np 2 strata generate -p hi   # needs MPI\n'
                      'bash tools/test.sh   # skip: runs this test suite\n```\n',
        'yaml-differs.md': '```yaml configs/examples/bundled.yaml\nversion: 1\n```\n',
        'yaml-same.md': '```yaml tests/docs/selftest.yaml\nversion: 1\n```\n',
        'open.md': '```sh\nstrata --version\n',
    }
    want_fail = {
        'unannounced.md': 'exit 2, the docs say 0',
        'wrong-code.md': 'exit 0, the docs say 2',
        'indented.md': 'a strata command in an indented code block',
        'piped.md': 'a strata command in an indented code block',
        'missing-file.md': 'exit 2, the docs say 0',
        'skip-bad-config.md': 'but its config does not pass --check',
        'yaml-differs.md': 'the block differs from configs/examples/bundled.yaml',
        'open.md': 'the code block never closes',
    }
    bad = 0
    markers = [('x   # needs 2 GPUs and your model (see the header)', 0, 2, 'needs a model you bring'),
               ('x   # needs your model', 0, 0, 'needs a model you bring'),
               ('x   # exits 2: does not fit', 2, 0, None),
               ('x   # needs a GPU', 0, 1, None),
               ('x   # the comment # has "exits 3" in it', 3, 0, None),
               ('x "a # b"', 0, 0, None),
               ('x   # builds (skip: runs the tests) and more', 0, 0, 'runs the tests')]
    for line, code, gpus, skip in markers:
        c = Command('m.md', 1, *split_comment(line))
        if (c.expect, c.needs_gpus, c.skip) != (code, gpus, skip) or (line == 'x "a # b"' and c.text != line):
            print('selftest: %r: expect %d, GPUs %d, skip %r; want %d, %d, %r' % (line, c.expect, c.needs_gpus, c.skip,
                                                                                 code, gpus, skip))
            bad += 1
    tmp = tempfile.mkdtemp(prefix='strata-docs-selftest-')
    try:
        repo_copy = os.path.join(tmp, 'repo')
        os.makedirs(os.path.join(repo_copy, 'tests', 'docs'))
        for name in ('configs', 'models'):
            os.symlink(os.path.join(repo, name), os.path.join(repo_copy, name))
        with open(os.path.join(repo_copy, 'tests', 'docs', 'selftest.yaml'), 'w') as f:
            f.write('version: 1\n')
        for name, text in planted.items():
            with open(os.path.join(repo_copy, name), 'w') as f:
                f.write(text)
            fails, ran, skipped = run_all(strata, repo_copy, [name], out=lambda s: None)
            msg = '\n'.join(fails)
            if name in want_fail:
                if want_fail[name] not in msg:
                    print('selftest: %s: expected a failure containing %r, got: %s' % (name, want_fail[name], msg or '(none)'))
                    bad += 1
            elif fails:
                print('selftest: %s: expected no failure, got: %s' % (name, msg))
                bad += 1
            if name == 'ok.md' and (ran, skipped) != (3, 0):
                print('selftest: ok.md: ran %d, skipped %d; want 3 and 0' % (ran, skipped))
                bad += 1
            if name == 'skip-ok.md' and (ran, skipped) != (0, 3):
                print('selftest: skip-ok.md: ran %d, skipped %d; want 0 and 3' % (ran, skipped))
                bad += 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print('selftest: %d of %d planted docs and markers misjudged' % (bad, len(planted) + len(markers)))
    return 1 if bad else 0


def main(argv):
    if len(argv) >= 3 and argv[0] == '--selftest':
        return selftest(os.path.abspath(argv[1]), os.path.abspath(argv[2]))
    if len(argv) < 2:
        print(__doc__)
        return 2
    strata, repo = os.path.abspath(argv[0]), os.path.abspath(argv[1])
    rest = argv[2:]
    list_only = '--list' in rest
    md = [a for a in rest if a != '--list']
    if not md:
        md = ['README.md'] + sorted(os.path.join('docs', f) for f in os.listdir(os.path.join(repo, 'docs'))
                                    if f.endswith('.md'))
    failures, ran, skipped = run_all(strata, repo, md, list_only)
    if list_only:
        return 1 if failures else 0
    print('docs: %d commands ran, %d skipped, from %d files' % (ran, skipped, len(md)))
    for f in failures:
        print('\nerror: ' + f)
    return 1 if failures or ran == 0 else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
