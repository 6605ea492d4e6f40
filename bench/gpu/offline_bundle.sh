#!/bin/bash
# Bundle what bench/gpu/device_run.sh needs on a GPU machine that has no
# network: Deno itself, node_modules (this platform's onnxruntime only) and
# the Vulkan loader's Debian packages. Run from the repository root on a
# machine with network access after `deno install`; writes .gpu/ and .gl/
# (both git-ignored), about 58 MB together.
set -euo pipefail
mkdir -p .gpu .gl
xz -T0 -9 -c "$(command -v deno | xargs readlink -f)" > .gpu/deno.xz
ort=node_modules/.deno/onnxruntime-node@*/node_modules/onnxruntime-node/bin/napi-v6
tar -cf - $(for p in darwin win32 linux/arm64; do printf -- '--exclude=%s ' $ort/$p; done) node_modules |
  xz -T0 -6 > .gpu/node_modules.tar.xz
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64'
(cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
du -sh .gpu .gl
