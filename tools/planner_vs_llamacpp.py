#!/usr/bin/env python3
"""strata's predictions beside llama.cpp's published figures for cards not here.

For every row of bench/llamacpp_published.yaml this writes a what-if deployment
(the catalog card, the preset shape and stored format, 128 tokens of context:
decode is then costed at 64 tokens of KV, the mean of llama-bench's tg128; the
prefill estimate is one 512-token chunk, llama-bench's pp512), runs
`strata plan --format json` on it and prints the markdown table that
docs/planner.md carries between its llamacpp-table markers.

  python3 tools/planner_vs_llamacpp.py build/strata                 # print the table
  python3 tools/planner_vs_llamacpp.py build/strata --configs DIR   # also keep the configs
  python3 tools/planner_vs_llamacpp.py build/strata --check docs/planner.md

--check exits 1 when the table in the file differs from the one the current
cost model gives (ctest planner_llamacpp_table), so a re-calibration that moves
these predictions also updates the document. Needs PyYAML."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = '<!-- llamacpp-table begin: tools/planner_vs_llamacpp.py writes this table -->'
END = '<!-- llamacpp-table end -->'


def config_text(row):
    m = row['model']
    return ('# what-if (tools/planner_vs_llamacpp.py): %s, llama-bench tg128 / pp512\n'
            'version: 1\nmodel: {preset: %s, quant: %s}\ndevices:\n  - {catalog: %s}\n'
            'context: 128\nprefill_chunk: 512\n' % (row['gpu'], m['preset'], m['quant'], row['card']))


def plan(strata, path):
    r = subprocess.run([strata, 'plan', '-c', path, '--format', 'json'], capture_output=True, text=True)
    if r.returncode not in (0, 2) or not r.stdout.strip():
        sys.exit('%s: strata plan failed (%d): %s' % (path, r.returncode, r.stderr.strip()))
    return json.loads(r.stdout)


def fmt_rate(x):
    return '—' if x is None else ('%.0f' % x if x >= 1000 else '%.1f' % x)


def fmt_err(pred, meas):
    if pred is None or meas is None:
        return '—'
    return '%+.0f%%' % (100.0 * (pred - meas) / meas)


def table(strata, rows, keep_dir):
    out = ['| card | model, format | strata plan | llama.cpp tg128 | strata tg128 | error | '
           'llama.cpp pp512 | strata pp512 | error | llama.cpp source |',
           '|---|---|---|---|---|---|---|---|---|---|']
    with tempfile.TemporaryDirectory() as tmp:
        for i, row in enumerate(rows):
            name = '%s-%s-%s.yaml' % (row['card'], row['model']['preset'], row['model']['quant'])
            path = os.path.join(keep_dir or tmp, name)
            with open(path, 'w') as f:
                f.write(config_text(row))
            p = plan(strata, path)
            if p.get('feasible'):
                st = p['stages'][0]
                how = '%s, %s' % (st['precision'], st['attention'])
                tg, pp = p['predicted']['decode_tok_s'], p['predicted']['prefill_tok_s']
            else:
                how, tg, pp = 'does not fit', None, None
            src = row['url']
            if src.startswith('http'):
                src = '[%s](%s), %s, %s' % (src.split('github.com/')[-1], src, row['date'], row['build'])
            elif 'build' in row:
                src = '%s, %s' % (src, row['column'])
            out.append('| %s | %s %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
                row['gpu'], row['model']['preset'], row['model']['quant'], how,
                fmt_rate(row.get('tg128')), fmt_rate(tg), fmt_err(tg, row.get('tg128')),
                fmt_rate(row.get('pp512')), fmt_rate(pp), fmt_err(pp, row.get('pp512')), src))
    return '\n'.join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('strata', help='the strata binary')
    ap.add_argument('--data', default=os.path.join(ROOT, 'bench', 'llamacpp_published.yaml'))
    ap.add_argument('--configs', help='keep the what-if configs in this directory')
    ap.add_argument('--check', metavar='FILE', help='exit 1 when FILE carries another table')
    a = ap.parse_args()
    with open(a.data) as f:
        rows = yaml.safe_load(f)['rows']
    for r in rows:
        for k in ('card', 'gpu', 'model', 'url', 'note'):
            if k not in r:
                sys.exit('%s: a row lacks %s: %s' % (a.data, k, r))
        if r['url'].startswith('http') and not all(k in r for k in ('date', 'build', 'column')):
            sys.exit('%s: %s %s: a published figure needs date, build and column' % (a.data, r['gpu'], r['model']))
    if a.configs:
        os.makedirs(a.configs, exist_ok=True)
    t = table(a.strata, rows, a.configs)
    if not a.check:
        print(t)
        return 0
    with open(a.check) as f:
        doc = f.read()
    if BEGIN not in doc or END not in doc:
        print('%s: no table markers (%s ... %s)' % (a.check, BEGIN, END))
        return 1
    have = doc.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    if have != t:
        print('%s: the llama.cpp comparison table is not what the cost model gives now; '
              'regenerate it with: python3 tools/planner_vs_llamacpp.py build/strata\n--- in the file\n%s\n'
              '--- now\n%s' % (a.check, have, t))
        return 1
    print('%s: table up to date (%d rows)' % (a.check, len(rows)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
