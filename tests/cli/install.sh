#!/usr/bin/env bash
# `cmake --install` into a temporary prefix; the installed strata, run from a
# directory outside the source tree, uses the bundled model and the configs
# under <prefix>/share/strata (not the source tree's), and generates the same
# text as the build tree's binary with -m models/tiny-kjv. A copy of the binary
# with models/ beside it uses that copy first; the build tree's binary uses the
# source tree. Usage: install.sh BUILD_DIR PYTHON (from the source root).
set -euo pipefail
build=$(cd "$1" && pwd); py=$(command -v "$2" || true); src=$(pwd)
case $py in /*) ;; *) py=$src/$2 ;; esac
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
model_path() { "$1" model --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["path"])'; }

cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log"
p=$tmp/prefix
s=$p/bin/strata
[ -x "$s" ] || fail "no $s"
[ -f "$p/share/strata/models/tiny-kjv/model.safetensors" ] || fail "the bundled model is not installed"
[ -f "$p/share/strata/models/tiny-kjv.gguf" ] || fail "the bundled GGUF is not installed"
[ -f "$p/share/strata/configs/examples/bundled.yaml" ] || fail "the configs are not installed"
[ -f "$p/share/doc/strata/README.md" ] || fail "the README is not installed"

cd "$tmp"   # away from the source tree
got=$(model_path "$s")
[ "$got" = "$(realpath "$p/share/strata/models/tiny-kjv")" ] || fail "installed strata uses '$got'"
"$s" --help | grep -q 'bundled model (models/tiny-kjv)' || fail "--help does not name the bundled model"
args=(-p "And the LORD spake unto Moses, saying," --greedy -n 16 --cpu)
installed=$("$s" generate "${args[@]}")
reference=$("$build/strata" generate -m "$src/models/tiny-kjv" "${args[@]}")
[ "$installed" = "$reference" ] || fail "installed generate: '$installed', build tree: '$reference'"
[ ${#installed} -gt 50 ] || fail "too little text: '$installed'"
"$s" plan -c "$p/share/strata/configs/examples/bundled.yaml" --check | grep -q "share/strata/configs/examples/../../models/tiny-kjv" \
  || fail "bundled.yaml does not resolve to the installed model"
"$s" generate -c "$p/share/strata/configs/examples/bundled.yaml" -p "In the beginning" -n 8 > /dev/null \
  || fail "generate -c bundled.yaml from the prefix"
"$s" plan -c "$p/share/strata/configs/what-if-m40-3050ti-f16.yaml" > /dev/null || fail "a what-if plan from the prefix"
echo "In the beginning God" | "$s" tokenize | grep -qx '1192 258 2144 385 198' || fail "installed tokenize"

# a binary with models/ beside it (an unpacked archive) uses that copy first
mkdir -p "$tmp/unpacked/models"
cp "$s" "$tmp/unpacked/strata"
cp -r "$src/models/tiny-kjv" "$tmp/unpacked/models/"
got=$(model_path "$tmp/unpacked/strata")
[ "$got" = "$(realpath "$tmp/unpacked/models/tiny-kjv")" ] || fail "the unpacked copy uses '$got'"
# the build tree's binary uses the source tree
got=$(model_path "$build/strata")
[ "$got" = "$(realpath "$src/models/tiny-kjv")" ] || fail "the build tree's strata uses '$got'"
echo "install: ok ($p)"
