#!/usr/bin/env bash
# Installs every Debian package that skillpack's build, tests and demo need.
# Idempotent; returns at once when everything is already present.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev            # libtorch 1.13.1 (CPU)
  libopenblas0-pthread    # optimised BLAS: the reference BLAS makes CPU matmuls ~18x slower
  libabsl-dev nlohmann-json3-dev libpcre2-dev
  libutf8proc-dev          # Unicode normalization (NFC/NFKC...) for tokenizer.json normalizers
  libgtest-dev libgmock-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libcivetweb-dev civetweb   # civetweb's CMake config refers to the civetweb program
  libgloo-dev              # torch c10d Gloo backend (data-parallel training)
  python3 python3-numpy    # test helpers that check our files against independent readers
  python3-grpcio python3-protobuf  # a gRPC client in another language (tests/e2e/python_client_test.py)
  prometheus               # promtool: tests check our /metrics text with Prometheus' own parser
  nodejs curl              # node runs the openai npm client; curl against the HTTP API (tests/e2e/openai_test.cc)
  clang clang-format       # the thread-safety analysis (-Wthread-safety) and the format check
  libclang-rt-14-dev       # clang's libFuzzer and sanitizer runtimes (make fuzz / asan / tsan)
  libprotoc-dev            # make tsan: Debian's gRPC source builds grpc_cpp_plugin (scripts/build-sanitized-grpc.sh)
  fortunes                 # ~2.5 MB of English text (BSD licence): the demo's pretraining corpus (docs/trainer.md)
  wordnet-base             # WordNet 3.0 (~28 MB): the router's lexicon features (router/lexicon.h, docs/router-format.md)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
