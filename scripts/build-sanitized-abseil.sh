#!/usr/bin/env bash
# Builds Debian's own abseil (the installed libabsl-dev version, from the
# Debian source package) with clang and -fsanitize=thread as shared libraries
# with Debian's SONAMEs (libabsl_*.so.20220623), into a cached private prefix.
#
#   scripts/build-sanitized-abseil.sh [PREFIX]     prints PREFIX/lib when done
#
# Why: absl::Mutex, which our code and Debian's gRPC lock with, tells TSan
# about its locks only when abseil itself is compiled with -fsanitize=thread
# (mutex.cc's ABSL_TSAN_MUTEX_* annotations). With Debian's uninstrumented
# libabsl TSan sees no happens-before edge between two critical sections and
# reports every access they guard. scripts/sanitize.sh tsan puts PREFIX/lib
# first in LD_LIBRARY_PATH, so the test binaries, our servers and libgrpc
# (which calls absl::Mutex out of line) all resolve to these libraries. The
# headers and options.h are the installed ones (same version, same Debian
# patches), so our objects compile against /usr/include as usual.
#
# PREFIX defaults to $SKILLPACK_CACHE/abseil-tsan-<debian version>
# (SKILLPACK_CACHE defaults to ~/.cache/skillpack); a finished build leaves
# PREFIX/.complete and is reused. The source files are checked against
# pinned SHA-256 sums (from the package's .dsc), so another installed version
# fails with a clear error rather than building something that differs.
set -euo pipefail
ORIG=abseil_20220623.1.orig.tar.gz
ORIG_SHA256=abfe2897f3a30edaa74bc34365afe3c2a3cd012091a97dc7e008f7016adcd5fe
DEB_VERSION=20220623.1-1+deb12u2
DEBIAN=abseil_${DEB_VERSION}.debian.tar.xz
DEBIAN_SHA256=e08490fc7b6f3beca1925953b0c4fb92df2de5e2a01295e4641e2a3d4e528eeb
POOL=${DEBIAN_POOL:-http://deb.debian.org/debian/pool/main/a/abseil}
JOBS=${JOBS:-$(nproc)}

installed=$(dpkg-query -W -f='${Version}' libabsl-dev 2>/dev/null || true)
if [ "$installed" != "$DEB_VERSION" ]; then
  echo "build-sanitized-abseil: installed libabsl-dev is '${installed:-not installed}'," \
    "this script builds $DEB_VERSION; update ORIG/DEBIAN and their SHA-256 sums" >&2
  exit 1
fi
CACHE=${SKILLPACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skillpack}
PREFIX=${1:-$CACHE/abseil-tsan-$DEB_VERSION}
. "$(dirname "$0")/debian-source.sh"
start_prefix "$PREFIX"
# The upstream tarball plus Debian's patches (SONAME 20220623, options.h with
# absl's own any/optional/string_view/variant, the CVE-2025-0838 fix), fetched,
# checked against the pinned sums and patched by scripts/debian-source.sh.
unpack_debian_source build-sanitized-abseil "$WORK" "$POOL" "$ORIG" "$ORIG_SHA256" "$DEBIAN" "$DEBIAN_SHA256"
if ! cmp -s "$WORK/src/absl/base/options.h" /usr/include/absl/base/options.h; then
  echo "build-sanitized-abseil: absl/base/options.h differs from the installed one;" \
    "the libraries would not match the headers we compile against" >&2
  exit 1
fi
# Debian's shared build (debian/rules: C++17, BUILD_SHARED_LIBS=ON), with
# clang and TSan instead of gcc; the libraries leave the TSan runtime to the
# executable that loads them, as every -fsanitize=thread shared library does.
FLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=thread"
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
CC=clang CXX=clang++ cmake -S "$WORK/src" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=None \
  -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON -DBUILD_TESTING=OFF \
  -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_CXX_FLAGS="$FLAGS" "${launcher[@]}" \
  -DCMAKE_INSTALL_PREFIX="$PREFIX" -DCMAKE_INSTALL_LIBDIR=lib >&2
cmake --build "$WORK/build" -j "$JOBS" >&2
cmake --install "$WORK/build" >/dev/null
# Every Debian library must have its instrumented twin, or the loader would
# mix the two for the missing ones.
missing=0
for lib in $(dpkg-query -L libabsl20220623 | grep '/libabsl_.*\.so\.20220623$'); do
  if [ ! -e "$PREFIX/lib/$(basename "$lib")" ]; then
    echo "build-sanitized-abseil: no $(basename "$lib") in $PREFIX/lib" >&2
    missing=1
  fi
done
[ "$missing" = 0 ] || exit 1
rm -rf "$WORK"
touch "$PREFIX/.complete"
echo "$PREFIX/lib"
