#!/usr/bin/env bash
# Builds Debian's own gRPC (the installed libgrpc++-dev's source version, from
# the Debian source package) with clang and -fsanitize=thread as shared
# libraries with the upstream SONAMEs Debian ships (libgrpc.so.29,
# libgrpc++.so.1.51, ...), against the TSan abseil of
# scripts/build-sanitized-abseil.sh, into a cached private prefix.
#
#   scripts/build-sanitized-grpc.sh ABSL_TSAN_LIB [PREFIX]   prints PREFIX/lib
#
# Why: gRPC hands calls, buffers and callback tags between its threads through
# its completion queues, executors and atomics inside libgrpc. With Debian's
# uninstrumented libgrpc TSan sees none of that ordering and reports the
# callback-API code the grpc++ headers compile into our binaries (CallOpSet,
# ByteBuffer, the reactors' OnDone after Finish) and gRPC's own buffers
# (bench/README.md, "Sanitizers"). scripts/sanitize.sh tsan links every binary
# with a DT_RPATH to PREFIX/lib, so they load these libraries instead.
#
# Only the libraries our binaries load are built (libgpr, libgrpc, libgrpc++,
# libgrpc++_reflection, libupb, libaddress_sorting; grpc_cpp_plugin too,
# because the build runs it to generate reflection.grpc.pb.cc). Their
# DT_RUNPATH is $ORIGIN and ABSL_TSAN_LIB, so they find each other and the
# TSan abseil whoever loads them. Headers are the installed ones: the script
# checks that every header libgrpc-dev and libgrpc++-dev install is
# byte-identical to the patched source's.
#
# PREFIX defaults to $SKILLPACK_CACHE/grpc-tsan-<debian version>
# (SKILLPACK_CACHE defaults to ~/.cache/skillpack); a finished build leaves
# PREFIX/.complete and is reused. The source files are checked against pinned
# SHA-256 sums (from grpc_1.51.1-3.dsc), so another installed version fails
# with a clear error rather than building something that differs. The build
# dependencies are the -dev packages scripts/install-deps.sh installs already
# (libgrpc++-dev pulls in libc-ares-dev, libre2-dev, libssl-dev, zlib1g-dev,
# libprotobuf-dev and protoc).
set -euo pipefail
ORIG=grpc_1.51.1.orig.tar.gz
ORIG_SHA256=b55696fb249669744de3e71acc54a9382bea0dce7cd5ba379b356b12b82d4229
DEB_VERSION=1.51.1-3
DEBIAN=grpc_${DEB_VERSION}.debian.tar.xz
DEBIAN_SHA256=767b69da166bae708a54c4740056d9e847d57d89885173016bfc57ebbf154b2d
POOL=${DEBIAN_POOL:-http://deb.debian.org/debian/pool/main/g/grpc}
JOBS=${JOBS:-$(nproc)}
LIBS="gpr grpc grpc++ grpc++_reflection upb address_sorting"

ABSL_TSAN_LIB=${1:?usage: build-sanitized-grpc.sh ABSL_TSAN_LIB [PREFIX]}
if [ ! -f "$ABSL_TSAN_LIB/../.complete" ] || [ ! -d "$ABSL_TSAN_LIB/cmake/absl" ]; then
  echo "build-sanitized-grpc: $ABSL_TSAN_LIB is not a finished prefix of" \
    "scripts/build-sanitized-abseil.sh (no .complete or no cmake/absl)" >&2
  exit 1
fi
# A binNMU (1.51.1-3+b1) is the same source rebuilt.
installed=$(dpkg-query -W -f='${Version}' libgrpc++-dev 2>/dev/null || true)
if [ "${installed%+b*}" != "$DEB_VERSION" ]; then
  echo "build-sanitized-grpc: installed libgrpc++-dev is '${installed:-not installed}'," \
    "this script builds source $DEB_VERSION; update ORIG/DEBIAN and their SHA-256 sums" >&2
  exit 1
fi
CACHE=${SKILLPACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skillpack}
PREFIX=${2:-$CACHE/grpc-tsan-$installed}
. "$(dirname "$0")/debian-source.sh"
start_prefix "$PREFIX"
# The upstream tarball plus Debian's patches (external abseil, no BoringSSL,
# no OpenCensus; the rest are for Python, Ruby and the docs), fetched, checked
# against the pinned sums and patched by scripts/debian-source.sh.
unpack_debian_source build-sanitized-grpc "$WORK" "$POOL" "$ORIG" "$ORIG_SHA256" "$DEBIAN" "$DEBIAN_SHA256"
differ=0
for h in $(dpkg-query -L libgrpc-dev libgrpc++-dev | grep -E '^/usr/include/grpc(\+\+|pp)?/.*\.h$'); do
  if ! cmp -s "$h" "$WORK/src/include/${h#/usr/include/}"; then
    echo "build-sanitized-grpc: $h differs from the source's include/${h#/usr/include/}" >&2
    differ=1
  fi
done
if [ "$differ" != 0 ]; then
  echo "build-sanitized-grpc: the libraries would not match the headers we compile against" >&2
  exit 1
fi
# debian/rules' shared build (packaged abseil, c-ares, protobuf, re2, ssl,
# zlib; BUILD_SHARED_LIBS=ON; no tests), with clang and TSan instead of gcc,
# and the TSan abseil found first. The libraries leave the TSan runtime to the
# executable that loads them, as every -fsanitize=thread shared library does.
# CMAKE_BUILD_RPATH_USE_ORIGIN: the build tree's RUNPATH says $ORIGIN for
# the tree's own libraries, which stays right once they are copied to PREFIX.
FLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=thread"
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
CC=clang CXX=clang++ cmake -S "$WORK/src" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=None \
  -DBUILD_SHARED_LIBS=ON -DgRPC_BUILD_TESTS=OFF \
  -DgRPC_ABSL_PROVIDER=package -DgRPC_CARES_PROVIDER=package -DgRPC_PROTOBUF_PROVIDER=package \
  -DgRPC_RE2_PROVIDER=package -DgRPC_SSL_PROVIDER=package -DgRPC_ZLIB_PROVIDER=package \
  -DgRPC_BENCHMARK_PROVIDER=package -DgRPC_BACKWARDS_COMPATIBILITY_MODE=OFF \
  -DgRPC_BUILD_GRPC_CPP_PLUGIN=ON -DgRPC_BUILD_GRPC_CSHARP_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_NODE_PLUGIN=OFF -DgRPC_BUILD_GRPC_OBJECTIVE_C_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_PHP_PLUGIN=OFF -DgRPC_BUILD_GRPC_PYTHON_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_RUBY_PLUGIN=OFF \
  -DCMAKE_PREFIX_PATH="$(cd "$ABSL_TSAN_LIB/.." && pwd)" -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON \
  -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_CXX_FLAGS="$FLAGS" "${launcher[@]}" >&2
# shellcheck disable=SC2086 # LIBS is a list of targets
cmake --build "$WORK/build" -j "$JOBS" --target $LIBS >&2
mkdir -p "$PREFIX/lib"
# Each library must have the SONAME Debian's package gives it, link abseil
# from ABSL_TSAN_LIB and gRPC's own libraries from beside it, and leave no
# symbol undefined but those of the TSan runtime (__tsan_*, Annotate*), which
# the executable brings.
debian_libs=$(dpkg-query -L libgrpc29 libgrpc++1.51)
runtime_syms=$(nm -g --defined-only "$(clang -print-runtime-dir)/libclang_rt.tsan-x86_64.a" 2>/dev/null |
  awk 'NF == 3 { print $3 }' | sort -u)
if [ -z "$runtime_syms" ]; then
  echo "build-sanitized-grpc: cannot read the TSan runtime's symbols (libclang-rt-14-dev)" >&2
  exit 1
fi
bad=0
for lib in $LIBS; do
  so=$(readelf -d "$WORK/build/lib$lib.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  if ! echo "$debian_libs" | grep -q "/$so\$"; then
    echo "build-sanitized-grpc: lib$lib.so has SONAME '$so', which Debian's packages do not ship" >&2
    bad=1
  fi
  cp -a "$WORK/build/lib$lib.so"* "$PREFIX/lib/"
done
for lib in $LIBS; do
  deps=$(ldd -r "$PREFIX/lib/lib$lib.so" 2>&1)
  wrong=$(echo "$deps" | grep ' => ' | grep -E 'libabsl_|libgrpc|libgpr|libupb|libaddress_sorting' |
    grep -v -e "=> $ABSL_TSAN_LIB/" -e "=> $PREFIX/lib/" || true)
  wrong+=$(echo "$deps" | sed -n 's/^undefined symbol: \([^[:space:]]*\).*/\1/p' | sort -u |
    comm -23 - <(echo "$runtime_syms"))
  if [ -n "$wrong" ]; then
    echo "build-sanitized-grpc: lib$lib.so resolves outside $ABSL_TSAN_LIB and $PREFIX/lib:" >&2
    echo "$wrong" >&2
    bad=1
  fi
done
[ "$bad" = 0 ] || exit 1
rm -rf "$WORK"
touch "$PREFIX/.complete"
echo "$PREFIX/lib"
