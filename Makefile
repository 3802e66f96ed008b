# The two Quickstart commands (`make demo`, `make test`) and a few helpers.
# Each installs what is missing first, so both work on a fresh Debian 12 machine.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps configure build test demo bench format clean fuzz asan tsan container-test

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

demo: build
	@bash scripts/demo.sh $(BUILD_DIR)

bench: build
	@bash scripts/bench.sh $(BUILD_DIR)

# libFuzzer targets (tests/fuzz/), built with clang in build-fuzz/, each run
# FUZZ_SECONDS; fails on any crash, leak or timeout (inputs kept in build-fuzz/crashes/).
FUZZ_SECONDS ?= 60
fuzz: deps
	@JOBS=$(JOBS) bash scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

# The whole tree and its tests under ASan+UBSan / ThreadSanitizer (clang),
# in build-asan/ and build-tsan/ (scripts/sanitize.sh). tsan first builds
# Debian's abseil and gRPC with TSan into ~/.cache/skillpack
# (scripts/build-sanitized-abseil.sh, scripts/build-sanitized-grpc.sh).
asan: deps
	@JOBS=$(JOBS) bash scripts/sanitize.sh asan

tsan: deps
	@JOBS=$(JOBS) bash scripts/sanitize.sh tsan

# Builds the CPU container image (docker/Dockerfile) with buildah and checks the
# server inside it from the host (scripts/container-test.sh; root; not in `make test`).
container-test: build
	@JOBS=$(JOBS) bash scripts/container-test.sh $(BUILD_DIR)

# Applies .clang-format to every C++ and proto source (the format test checks it).
format:
	@git ls-files '*.h' '*.cc' '*.cu' '*.proto' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR)
