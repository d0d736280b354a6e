#!/usr/bin/env python3
"""One flag style across the strata commands (issue 15, item 4), checked from
the outside through the binary:

* global flags (-v, -q, --json, --version) before or after the command;
* --json on every command that prints data parses with Python's json, the
  same document before and after the command; plan --format json = plan --json;
* every command that takes a model takes -m; `strata model` a positional path
  too; without -m/-c the bundled model (the same output as -m models/tiny-kjv);
* numbers: each numeric flag's edge values are accepted or refused exactly as
  its range says (parse-only: "FLAG VALUE --help" exits 0 when the value was
  taken, 2 when refused), and for each generation flag exactly as the config
  key with the same value is (strata plan --check on a written config); a
  refusal names the range;
* a missing model is exit code 2 for every command, with or without --check;
* files written by -o/--svg/--probe -o print "wrote FILE";
* the plan's SVG has a colour key and its memory bars in stage order.

usage: check_cli.py STRATA   (run from the repository root)
"""
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

STRATA = os.path.abspath(sys.argv[1])
failures = []


def run(args, stdin=None, env=None):
    e = dict(os.environ)
    e['NO_COLOR'] = '1'
    if env:
        e.update(env)
    r = subprocess.run([STRATA] + args, input=stdin, capture_output=True, text=True, env=e, timeout=600)
    return r.returncode, r.stdout, r.stderr


def loads(text):
    """JSON or None (a failed check, not a crash of the test)."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def check(cond, what):
    if not cond:
        failures.append(what)
        print('FAIL ' + what)


# ---- global flags before or after the command --------------------------------------------

rc1, out1, _ = run(['--version'])
rc2, out2, _ = run(['model', '--version'])
rc3, out3, _ = run(['plan', '--cpu', '--version'])
check(rc1 == rc2 == rc3 == 0 and out1 == out2 == out3 and out1.startswith('strata '),
      '--version before and after the command: %r / %r / %r' % (out1[:40], out2[:40], out3[:40]))

qtmp = tempfile.mkdtemp(prefix='strata-cli-q-')
whatif = ['plan', '-c', 'configs/what-if-m40-3050ti-f16.yaml', '-o', os.path.join(qtmp, 'p.yaml')]   # catalog cards:
rc_0, out_0, err_0 = run(whatif)                                                          # the same plan each run
rc_a, out_a, err_a = run(['-q'] + whatif)
rc_b, out_b, err_b = run(whatif + ['-q'])
check(rc_0 == rc_a == rc_b == 0 and out_0 == out_a == out_b and err_0.startswith('wrote ') and err_a == err_b == '',
      '-q before and after the command silences "wrote FILE": %r %r %r' % (err_0, err_a, err_b))
_, _, err_v1 = run(['-v', 'model'])
_, _, err_v2 = run(['model', '-v'])
check('info: no -m or -c: using the bundled model' in err_v1 and err_v1 == err_v2,
      '-v before and after the command: %r / %r' % (err_v1, err_v2))
# the value of an option is never taken for a global flag
rc, out, err = run(['generate', '--cpu', '-n', '3', '--greedy', '--stop', '-v', '-p', '-q'])
check(rc == 0 and out.startswith('-q') and 'info:' not in err, 'option values "-v"/"-q" are values: rc %d %r' % (rc, err))

# ---- --json on every data command ------------------------------------------------------------

json_cmds = {
    'inventory': (['inventory'], None),
    'model': (['model'], None),
    'plan': (['plan', '--cpu'], None),
    'bench': (['bench', '--cpu', '--prompt-tokens', '16', '--decode-tokens', '4', '--repeat', '1',
               '--bw-bytes', '1MiB'], None),
    'perplexity': (['perplexity', '--cpu', '-f', 'tests/fixtures/kjv/test.txt', '--max-windows', '1',
                    '--window', '64'], None),
    'tokenize': (['tokenize'], 'In the beginning God'),
    'detokenize': (['detokenize', '1192,258,2144,385'], None),
    'calibrate': (['calibrate', '--tokens', '32'], None),
}
keys = {'inventory': 'devices', 'model': 'architecture', 'plan': 'stages', 'bench': 'decode_tok_s',
        'perplexity': 'perplexity', 'calibrate': 'layers'}
for name, (args, stdin) in json_cmds.items():
    docs = []
    for form in (['--json'] + args, args + ['--json']):
        rc, out, err = run(form, stdin)
        try:
            docs.append(json.loads(out))
        except ValueError as e:
            docs.append(None)
            check(False, '%s: --json output does not parse (%s): %r %s' % (' '.join(form), e, out[:200], err[-300:]))
        check(rc == 0, '%s: exit %d %s' % (' '.join(form), rc, err[-300:]))
    d = docs[0]
    if name in keys and isinstance(d, dict):
        check(keys[name] in d, '%s --json lacks "%s"' % (name, keys[name]))
    if name == 'tokenize':
        check(d == [1192, 258, 2144, 385], 'tokenize --json: %r' % d)
    if name == 'detokenize':
        check(d == 'In the beginning God', 'detokenize --json: %r' % d)
    if name in ('inventory', 'model', 'plan', 'tokenize', 'detokenize', 'calibrate') and None not in docs:
        a, b = docs
        if name == 'inventory':   # free memory moves between two readings
            for doc in (a, b):
                for dev in doc.get('devices', []):
                    dev.pop('mem_free_bytes', None)
        if name == 'plan':        # so does the CPU's usable memory
            a = {k: v for k, v in a.items() if k not in ('devices', 'stages', 'reasons')}
            b = {k: v for k, v in b.items() if k not in ('devices', 'stages', 'reasons')}
        check(a == b, '%s: --json before and after the command differ' % name)
rc, out_f, _ = run(['plan', '-c', 'configs/what-if-m40-3050ti-14b-q4km.yaml', '--format', 'json'])
rc2, out_j, _ = run(['plan', '-c', 'configs/what-if-m40-3050ti-14b-q4km.yaml', '--json'])
check(rc == rc2 == 0 and out_f == out_j and (loads(out_j) or {}).get('feasible'), 'plan --format json == plan --json')
rc, _, err = run(['plan', '-c', 'configs/what-if-m40-3050ti-14b-q4km.yaml', '--json', '--format', 'table'])
check(rc == 2 and 'disagree' in err, 'plan --json --format table: %d %r' % (rc, err))
rc, _, err = run(['generate', '-p', 'x', '--json'])
check(rc == 2 and 'generate streams text' in err, 'generate --json is refused with the reason: %d %r' % (rc, err))
rc, out, err = run(['plan', '-c', 'configs/what-if-2xh100-qwen72b-bf16.yaml', '--json'])
check(rc == 2 and (loads(out) or {}).get('feasible') is False and err.count('does not fit') == 1,
      'a plan that does not fit: JSON on stdout, one line on stderr: %d %r' % (rc, err))

# ---- -m everywhere, the bundled model as the default ----------------------------------------------

rc, by_pos, _ = run(['model', 'models/tiny-kjv.gguf'])
rc2, by_m, _ = run(['model', '-m', 'models/tiny-kjv.gguf'])
check(rc == rc2 == 0 and by_pos == by_m and 'format: GGUF' in by_m, 'strata model -m PATH == strata model PATH')
rc, _, err = run(['model', 'a.gguf', '-m', 'b.gguf'])
check(rc == 2 and 'one model at a time' in err, 'strata model with two paths: %d %r' % (rc, err))
rc, out, _ = run(['model', '--json'])
check(rc == 0 and (loads(out) or {}).get('path') == os.path.realpath('models/tiny-kjv'), 'the default model is the bundled one')
gen = ['-p', 'And the LORD spake unto Moses, saying,', '--greedy', '-n', '12', '--cpu']
rc, plain, _ = run(['generate'] + gen)
rc2, with_m, _ = run(['generate', '-m', 'models/tiny-kjv'] + gen)
check(rc == rc2 == 0 and plain == with_m and len(plain) > 40, 'generate without -m == generate -m models/tiny-kjv')
for cmd in (['tokenize'], ['detokenize', '1192', '258']):
    rc, a, _ = run(cmd, 'In the beginning')
    rc2, b, _ = run(cmd[:1] + ['-m', 'models/tiny-kjv'] + cmd[1:], 'In the beginning')
    check(rc == rc2 == 0 and a == b, '%s without -m == with -m models/tiny-kjv' % cmd[0])
for cmd in ('generate', 'plan', 'bench', 'perplexity', 'calibrate', 'tokenize', 'detokenize', 'model'):
    rc, out, _ = run([cmd, '--help'])
    check(rc == 0 and 'bundled' in out and 'models/tiny-kjv' in out, '%s --help names the bundled model' % cmd)

# ---- a missing model: exit code 2 everywhere ---------------------------------------------------------

for args in (['generate', '-m', 'no/such', '-p', 'x'], ['plan', '-m', 'no/such'], ['bench', '-m', 'no/such'],
             ['perplexity', '-m', 'no/such', '-f', 'README.md'], ['calibrate', '-m', 'no/such'],
             ['model', 'no/such'], ['model', '-m', 'no/such'], ['tokenize', '-m', 'no/such'],
             ['detokenize', '-m', 'no/such', '1'],
             ['plan', '-c', 'tests/config/bad-model-path.yaml', '--check'],
             ['plan', '-c', 'tests/config/bad-model-path.yaml'],
             ['generate', '-c', 'tests/config/bad-model-path.yaml', '-p', 'x'],
             ['bench', '-c', 'tests/config/bad-model-path.yaml'],
             ['perplexity', '-c', 'tests/config/bad-model-path.yaml', '-f', 'README.md'],
             ['calibrate', '-c', 'tests/config/bad-model-path.yaml']):
    rc, _, err = run(args, '')
    check(rc == 2 and 'does not exist' in err and 'hint:' in err, '%s: exit %d %r' % (' '.join(args), rc, err))

# ---- numbers: edge values, the range in the message, the same as the config -------------------------

# flag, config key (None: no config twin), accepted values, refused values
gen_flags = [
    ('--temp', 'temperature', ['0', '100', '0.7'], ['-0.001', '100.5', '-1', 'nan', 'inf', 'x', '']),
    ('--top-k', 'top_k', ['0', '2147483647', '40'], ['-1', '-3', '2147483648', '1.5']),
    ('--top-p', 'top_p', ['1', '0.0001', '0.95'], ['0', '1.0001', '2', '-0.5']),
    ('--min-p', 'min_p', ['0', '0.999'], ['1', '-0.001', '1.5']),
    ('--repeat-penalty', 'repeat_penalty', ['100', '0.001', '1'], ['0', '100.01', '-1']),
    ('--repeat-last-n', 'repeat_last_n', ['-1', '0', '16777216'], ['-2', '16777217']),
    ('--frequency-penalty', 'frequency_penalty', ['-2', '2', '0'], ['-2.01', '2.01']),
    ('--presence-penalty', 'presence_penalty', ['-2', '2'], ['-2.01', '2.01']),
    ('--seed', 'seed', ['0', '18446744073709551615', '-1'], ['-2', '18446744073709551616', 'x', '1.5']),
    ('-n', 'max_tokens', ['1', '16777216'], ['-1', '16777217', 'x']),
    ('--ctx', 'context', ['1', '16777216'], ['0', '16777217', '100000000']),
    ('--batch', 'prefill_chunk', ['1', '16777216'], ['0', '16777217']),
    ('--threads', 'threads', ['0', '4096'], ['-1', '4097']),
]
other_flags = [   # command, flag, accepted, refused
    ('plan', '--ctx', ['1', '16777216'], ['0', '16777217']),
    ('bench', '--prompt-tokens', ['1', '16777216'], ['0', '16777217']),
    ('bench', '--decode-tokens', ['0', '16777216'], ['-1', '16777217']),
    ('bench', '--repeat', ['1', '64'], ['0', '65']),
    ('bench', '--ctx', ['1', '16777216'], ['0', '16777217']),
    ('bench', '--threads', ['0', '4096'], ['-1', '4097']),
    ('bench', '--seed', ['0', '9223372036854775807'], ['-1', '9223372036854775808']),
    ('perplexity', '--window', ['2', '16777216'], ['1', '16777217']),
    ('perplexity', '--max-windows', ['0', '9223372036854775807'], ['-1']),
    ('perplexity', '--threads', ['0', '4096'], ['-1', '4097']),
    ('calibrate', '--tokens', ['1', '1048576'], ['0', '1048577']),
    ('calibrate', '--max-abs', ['1e-9', '65504'], ['0', '-1', 'inf']),
    ('calibrate', '--max-error', ['1e-9', '0.5'], ['0', '-0.1', 'nan']),
    ('calibrate', '--threads', ['0', '4096'], ['-1', '4097']),
    ('inventory', '--reps', ['1', '1000'], ['0', '1001']),
    ('inventory', '--threads', ['0', '4096'], ['-1', '4097']),
]


def parse_only(cmd, flag, value):
    """0 when the parser took the value (then --help ends the run), 2 when it refused it."""
    rc, out, err = run([cmd, flag, value, '--help'])
    return rc, err


def config_accepts(key, value):
    gen_keys = ('temperature', 'top_k', 'top_p', 'min_p', 'repeat_penalty', 'repeat_last_n', 'frequency_penalty',
                'presence_penalty', 'seed', 'max_tokens')
    if key in gen_keys:
        text = 'version: 1\nmodel: {preset: qwen2.5-0.5b}\ndevices: [cpu]\ngeneration:\n  %s: %s\n' % (key, value)
    elif key == 'threads':
        text = 'version: 1\nmodel: {preset: qwen2.5-0.5b}\ndevices:\n  - {device: cpu, threads: %s}\n' % value
    else:
        text = 'version: 1\nmodel: {preset: qwen2.5-0.5b}\ndevices: [cpu]\n%s: %s\n' % (key, value)
    with tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False) as f:
        f.write(text)
    try:
        rc, _, err = run(['plan', '-c', f.name, '--check'])
    finally:
        os.unlink(f.name)
    return rc


n_edges = 0
for flag, key, good, bad in gen_flags:
    for v in good + bad:
        want = 0 if v in good else 2
        rc, err = parse_only('generate', flag, v)
        n_edges += 1
        check(rc == want, 'generate %s %r: exit %d, want %d %s' % (flag, v, rc, want, err.strip()))
        if want == 2:
            check('wants' in err and ' got ' in err and ('from ' in err or ' in ' in err or '>' in err),
                  'generate %s %r: the message states the range: %r' % (flag, v, err))
        if key and v not in ('', 'x', 'nan', 'inf'):
            crc = config_accepts(key, v)
            check((crc == 0) == (rc == 0), 'generate %s %s and config %s: %s: the command line says %d, the config %d'
                  % (flag, v, key, v, rc, crc))
for cmd, flag, good, bad in other_flags:
    for v in good + bad:
        want = 0 if v in good else 2
        rc, err = parse_only(cmd, flag, v)
        n_edges += 1
        check(rc == want, '%s %s %r: exit %d, want %d %s' % (cmd, flag, v, rc, want, err.strip()))
        if want == 2:
            check('wants' in err and v in err, '%s %s %r: the message names the range and the value: %r'
                  % (cmd, flag, v, err))
rc, _, err = run(['generate', '-p', 'x', '--ctx', '100000000'])
check(rc == 2 and 'wants a token count from 1 to 16777216' in err, '--ctx 100000000: %r' % err)
# the off values run (greedy, filters off), and a refused value is never silently "off"
rc, a, _ = run(['generate'] + gen + ['--top-p', '1', '--top-k', '0', '--min-p', '0', '--repeat-penalty', '1'])
rc2, b, _ = run(['generate'] + gen + ['--temp', '0'])
check(rc == rc2 == 0 and a == b == plain, 'off values give the greedy text')
# --temperature is --temp (the config's and the OpenAI API's name), range included
rc, a, _ = run(['generate'] + gen + ['--temp', '0.8', '--seed', '7'])
rc2, b, _ = run(['generate'] + gen + ['--temperature', '0.8', '--seed', '7'])
check(rc == rc2 == 0 and a == b and a != plain, '--temperature 0.8 samples as --temp 0.8: %r / %r' % (a, b))
rc, _, err = run(['generate'] + gen + ['--temperature', '-1'])
check(rc == 2 and '--temp' in err and 'wants' in err, '--temperature -1 is refused with the range: %r' % err)

# ---- files written say so -----------------------------------------------------------------------------

tmp = tempfile.mkdtemp(prefix='strata-cli-')
plan_yaml, plan_svg = os.path.join(tmp, 'plan.yaml'), os.path.join(tmp, 'plan.svg')
rc, _, err = run(['plan', '--cpu', '-o', plan_yaml, '--svg', plan_svg])
check(rc == 0 and 'wrote %s\n' % plan_yaml in err and 'wrote %s\n' % plan_svg in err and os.path.getsize(plan_svg) > 0,
      'plan -o/--svg print "wrote FILE": %r' % err)
prof = os.path.join(tmp, 'numerics.yaml')
rc, out, err = run(['calibrate', '--tokens', '32', '-o', prof])
check(rc == 0 and 'wrote %s\n' % prof in err and os.path.getsize(prof) > 0, 'calibrate -o prints "wrote FILE": %r' % err)
probe = os.path.join(tmp, 'profile.json')
rc, out, err = run(['inventory', '--probe', '--probe-bytes', '4MiB', '--reps', '1', '-o', probe])
check(rc == 0 and 'wrote %s\n' % probe in err and os.path.getsize(probe) > 0, 'inventory --probe -o: %r' % err)
rc, _, err = run(['-q', 'plan', '--cpu', '-o', plan_yaml])
check(rc == 0 and err == '', '-q silences "wrote FILE": %r' % err)

# ---- the plan's picture: a colour key, memory bars in stage order -----------------------------------

svg = os.path.join(tmp, 'mix.svg')
rc, _, _ = run(['plan', '-c', 'configs/what-if-m40-3050ti-14b-q4km.yaml', '--svg', svg])
svg2 = os.path.join(tmp, 'mix7b.svg')
rc2, _, _ = run(['plan', '-c', 'configs/what-if-m40-3050ti-q4km.yaml', '--svg', svg2])
check(rc == rc2 == 0, 'plan --svg of the what-if pairs')
for path, config in ((svg, 'configs/what-if-m40-3050ti-14b-q4km.yaml'), (svg2, 'configs/what-if-m40-3050ti-q4km.yaml')):
    root = ET.parse(path).getroot()
    stages = [g.get('data-device') for g in root.iter('{http://www.w3.org/2000/svg}g') if g.get('class') == 'stage']
    bars = [g.get('data-device') for g in root.iter('{http://www.w3.org/2000/svg}g') if g.get('class') == 'membar']
    check(len(stages) == 2 and bars == stages, '%s: memory bars %r in stage order %r' % (config, bars, stages))
    key = [g for g in root.iter('{http://www.w3.org/2000/svg}g') if g.get('class') == 'key']
    text = ' '.join(t.text or '' for t in key[0].iter('{http://www.w3.org/2000/svg}text')) if key else ''
    for label in ('weights', 'KV cache', 'workspace', 'runtime overhead + reserve', 'end of usable memory'):
        check(label in text, '%s: the colour key names %r: %r' % (config, label, text))
    # each used device's bar has the three shades the key explains
    for g in root.iter('{http://www.w3.org/2000/svg}g'):
        if g.get('class') != 'membar':
            continue
        shades = [r for r in g.iter('{http://www.w3.org/2000/svg}rect') if (r.get('class') or '').startswith('mem-')]
        check([r.get('class') for r in shades] == ['mem-weights', 'mem-kv', 'mem-workspace'],
              '%s: %s has the three shades' % (config, g.get('data-device')))

print('cli: %d numeric edge values, %d failures' % (n_edges, len(failures)))
sys.exit(1 if failures else 0)
