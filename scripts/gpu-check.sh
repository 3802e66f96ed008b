#!/usr/bin/env bash
# The CUDA kernels' tests (tests/kernels: batched dequant, reconstruct and the
# segmented low-rank apply against their CPU twins, fp16 and bf16, every bit
# width) on a GPU machine (issue 15). That machine has the CUDA toolkit and
# PyTorch's CUDA libtorch but not abseil or GoogleTest, and no package
# registry, so those travel as Debian packages unpacked into a prefix there.
#
#   scripts/gpu-check.sh --fetch-debs   # here: the packages into .debs/gpu/
#   scripts/gpu-check.sh [OUT_DIR]      # there: build with nvcc and g++, run,
#                                       # raw results in OUT_DIR (default $OUT)
#
# The test binary is built from its sources directly (no CMake project: the
# project's build wants gRPC and the rest of the server), against that
# libtorch's headers and ABI. Only these tests so far: the model's CUDA path,
# the parity with transformers and the benchmarks of issue 15 are not here.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --fetch-debs ]; then
  mkdir -p .debs/gpu
  cd .debs/gpu && apt-get download libabsl-dev libabsl20220623 libgtest-dev googletest
  exit 0
fi
out=${1:-${OUT:?give OUT_DIR or set OUT}}
mkdir -p "$out"
if ! ls .debs/gpu/*.deb > /dev/null 2>&1; then
  echo "gpu-check: no packages in .debs/gpu/ (run scripts/gpu-check.sh --fetch-debs first and carry .debs)" >&2
  exit 2
fi
prefix=$(mktemp -d)
build=$(mktemp -d)
trap 'rm -rf "$prefix" "$build"' EXIT
for deb in .debs/gpu/*.deb; do dpkg -x "$deb" "$prefix"; done
lib=$prefix/usr/lib/x86_64-linux-gnu
torch=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
abi=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
cuda=${CUDA_HOME:-/usr/local/cuda}
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
  "$cuda/bin/nvcc" --version | tail -2
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  g++ --version | head -1
} > "$out/machine.txt" 2>&1
inc=(-I. -isystem "$prefix/usr/include" -isystem "$torch/include" -isystem "$torch/include/torch/csrc/api/include"
  -isystem "$cuda/include")
flags=(-std=c++17 -O2 "-D_GLIBCXX_USE_CXX11_ABI=$abi")
pids=()
for src in tests/kernels/kernels_test.cc tests/kernels/kernels_reference.cc pack/codec/bitpack.cc \
  pack/codec/quantize.cc pack/codec/lowrank.cc core/status.cc; do
  g++ "${flags[@]}" "${inc[@]}" -c "$src" -o "$build/$(basename "$src").o" &
  pids+=($!)
done
for src in kernels/*.cu; do
  "$cuda/bin/nvcc" -std=c++17 -O3 -lineinfo "-gencode=arch=compute_$arch,code=sm_$arch" \
    -Xcompiler "-D_GLIBCXX_USE_CXX11_ABI=$abi" -I. -c "$src" -o "$build/$(basename "$src").o" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
g++ -o "$build/kernels_test" "$build"/*.o "$lib/libgtest_main.a" "$lib/libgtest.a" "$lib"/libabsl_*.so \
  -Wl,-rpath,"$lib" -L"$torch/lib" -Wl,-rpath,"$torch/lib" -ltorch -ltorch_cpu -lc10 \
  -L"$cuda/lib64" -Wl,-rpath,"$cuda/lib64" -lcudart -lcublas -lpthread
# For the test and compute-sanitizer's runs of it: abseil's libraries need
# each other, and the binary's RUNPATH does not reach them.
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
set +e
"$build/kernels_test" --gtest_output="json:$out/kernels_test.json" > "$out/kernels_test.log" 2>&1
rc=$?
set -e
tail -40 "$out/kernels_test.log"
echo "kernels_test exit $rc"
# compute-sanitizer's four tools on the GPU cases (docs/cuda.md): a report or
# a nonzero exit is a bug.
sanitizer=$cuda/bin/compute-sanitizer
if [ -x "$sanitizer" ]; then
  for tool in memcheck racecheck initcheck synccheck; do
    extra=()
    [ "$tool" = memcheck ] && extra=(--leak-check full)
    set +e
    "$sanitizer" --tool "$tool" "${extra[@]}" \
      --error-exitcode 99 "$build/kernels_test" --gtest_filter='KernelsGpu*' > "$out/sanitizer_$tool.log" 2>&1
    s=$?
    set -e
    echo "compute-sanitizer $tool exit $s: $(grep -E 'ERROR SUMMARY|LEAK SUMMARY|RACECHECK SUMMARY' "$out/sanitizer_$tool.log" | tr '\n' ' ')"
    [ "$s" -ne 0 ] && rc=$s
  done
else
  echo "no $sanitizer: compute-sanitizer not run"
fi
exit "$rc"
