#!/usr/bin/env bash
# The README's main job: installs the build dependencies, builds strata, shows
# what this machine has and the plan for it, then generates text with the
# bundled model (models/tiny-kjv) on whatever devices the machine has: every
# GPU when there is one, else the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh --build
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
echo
./build/strata inventory
echo
./build/strata plan -m models/tiny-kjv
echo
./build/strata generate -m models/tiny-kjv -p "${STRATA_PROMPT:-And the LORD spake unto Moses, saying,}" -n 120 --stats
