#!/usr/bin/env bash
# Installs Debian bookworm's CUDA 11.8 toolkit (nvidia-cuda-toolkit, non-free)
# and g++-11, the last toolkit that still targets Maxwell (sm_52) and the
# host compiler it accepts. Needs root and network; about 2.5 minutes and
# ~4 GB of disk. Touches only the Debian apt source (adds contrib non-free).
set -euo pipefail
src=/etc/apt/sources.list.d/debian.sources
if [ -f "$src" ]; then
  if ! grep -q 'non-free' "$src"; then
    # add the components to the bookworm entries (main archive only)
    sed -i 's/^Components: main$/Components: main contrib non-free/' "$src"
  fi
elif [ -f /etc/apt/sources.list ]; then
  sed -i -E '/^deb .*bookworm/ { / non-free( |$)/! s/ main( |$)/ main contrib non-free\1/ }' /etc/apt/sources.list
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-cache policy nvidia-cuda-toolkit g++-11 | sed -n '1,12p'
apt-get install -y -qq --no-install-recommends nvidia-cuda-toolkit g++-11 >/dev/null
/usr/bin/nvcc --version | tail -2
