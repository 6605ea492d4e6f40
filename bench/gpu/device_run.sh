#!/bin/bash
# Run the GPU bench on a GPU machine without network, from what
# bench/gpu/offline_bundle.sh bundled: unpack the Vulkan loader, Deno and
# node_modules, point the Vulkan loader at the NVIDIA driver's ICD when the
# standard places have none, and run bench/gpu.ts (results in $OUT, or
# bench/results). Extra arguments go to bench/gpu.ts.
cd "$(dirname "$0")/../.."
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
xz -dc .gpu/deno.xz > /tmp/deno && chmod +x /tmp/deno
tar -xJf .gpu/node_modules.tar.xz
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1 && [ -f $icd ]; then
  export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
fi
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f $egl ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
ldconfig -p | grep -q libvulkan.so.1 || echo "no libvulkan.so.1 after unpacking .gl/: Deno's WebGPU will find no Vulkan adapter"
echo "Vulkan ICD: ${VK_DRIVER_FILES:-standard places}"
# cuBLAS and NVRTC for the CUDA encoder: the toolkit's, else the Python wheels'.
for lib in libcublas.so libnvrtc.so; do
  f=$(find /usr/local/cuda/lib64 /usr/local/cuda*/lib64 /opt /usr/lib -name "$lib.1[0-9]*" \
    -not -path '*/stubs/*' 2>/dev/null | head -1)
  [ -n "$f" ] && LATENTWATCH_CUDA_LIBS="${LATENTWATCH_CUDA_LIBS:+$LATENTWATCH_CUDA_LIBS:}$(dirname "$f")"
done
export LATENTWATCH_CUDA_LIBS LD_LIBRARY_PATH="${LATENTWATCH_CUDA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "CUDA libraries: ${LATENTWATCH_CUDA_LIBS:-none found}; $(ldconfig -p | grep -c libcuda.so) libcuda entries"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv
export DENO_DIR=/tmp/denodir XDG_RUNTIME_DIR=/tmp/xdg
mkdir -p /tmp/xdg
timeout "${GPU_BENCH_TIMEOUT:-420}" /tmp/deno run -A --cached-only bench/gpu.ts \
  --out "${OUT:-bench/results}" "$@"
echo "bench exit $?"
# The CUDA encoder's tests against the f64 reference (ignored where there is no GPU).
timeout 120 /tmp/deno test -A --cached-only --no-check src/runtime/cuda_encoder_test.ts src/runtime/cuda_choice_test.ts
echo "cuda tests exit $?"
