#!/usr/bin/env python3
"""Runs a Python test script for ctest, and turns a missing third-party package
into a skip instead of a failure:

    python3 tests/harness/py_run.py SCRIPT [ARGS...]

The script runs as __main__ with sys.argv = [SCRIPT, ARGS...] and its exit
status is this one's. When it stops on an ImportError for one of the peer-check
packages below (numpy, gguf, tokenizers, safetensors, jinja2, openai, and torch or
transformers where a script wants them), this prints which package and which
interpreter, and exits 77, which tests/CMakeLists.txt declares as
SKIP_RETURN_CODE: ctest reports the test as skipped, not passed, and
tools/test.sh fails a CI run that skipped a test it expected to run. A missing
module of the project itself is an ordinary failure.
"""
import os
import runpy
import sys

SKIP = 77
PACKAGES = {"numpy", "gguf", "tokenizers", "safetensors", "jinja2", "openai", "torch", "transformers"}


def main():
    if len(sys.argv) < 2:
        print("usage: py_run.py SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    except ImportError as e:
        top = (e.name or "").split(".")[0]
        if top not in PACKAGES:
            raise
        print(f"SKIP: {script} needs the Python package '{top}', which {sys.executable} cannot import ({e}); "
              f"tools/test.sh installs it in .venv (cmake -DSTRATA_PYTHON=.venv/bin/python3)", file=sys.stderr)
        return SKIP
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
