#!/usr/bin/env bash
# `make container-test`: builds the CPU container image (docker/Dockerfile) with
# buildah, runs skillpack-server inside it and checks it from the host.
#
#   1. the Debian 12 base image: made with debootstrap --variant=minbase and
#      imported as $BASE_IMAGE when absent (no image registry is needed)
#   2. `buildah bud --isolation chroot --pull=never` of docker/Dockerfile
#      (ccache in a cache mount: a rebuild recompiles only what changed)
#   3. the image's configuration: entrypoint, non-root user, volume, ports,
#      healthcheck
#   4. the server started inside a container (`buildah run --isolation chroot`,
#      the host's network) with its ENTRYPOINT + CMD, a model folder and an admin
#      token mounted, the pack store on a host folder
#   5. from the host, with our CLI ($BUILD_DIR/cli/skillpack): gRPC health,
#      Generate (the same tokens as offline generation on the host), a pack
#      uploaded through the Admin API landing in the volume as the image's user,
#      Generate with that pack, GET /metrics and /healthz, the OpenAI-compatible
#      HTTP API where the server has one; the image's HEALTHCHECK command run
#      inside the container; then SIGTERM and a clean exit
# Exits non-zero on the first failure; removes its containers and files.
#
# Usage: scripts/container-test.sh [BUILD_DIR]     (must run as root: debootstrap
# and buildah's chroot isolation). Environment:
#   DOCKERFILE     docker/Dockerfile (default) or docker/Dockerfile.cuda
#   IMAGE          image to build and test (default localhost/skillpack-server:0.1.0,
#                  with -cuda for Dockerfile.cuda)
#   CUDA_TOOLKIT_IMAGE  Dockerfile.cuda's toolkit image; when unset, one is made
#                  from the local toolkit $CUDA_HOME (default /usr/local/cuda, 13.x)
#   BASE_IMAGE     the Dockerfile's FROM (default docker.io/library/debian:bookworm)
#   DEBIAN_MIRROR  debootstrap mirror (default: the first one in /etc/apt/sources*)
#   WORK_DIR       where the base rootfs is made (default /var/tmp/skillpack-container)
#   JOBS           compile jobs inside the build (default nproc)
#   SKIP_BUILD=1   test an image built before
set -euo pipefail
BUILD_DIR=${1:-build}
DOCKERFILE=${DOCKERFILE:-docker/Dockerfile}
cuda=0
case "$DOCKERFILE" in *.cuda) cuda=1 ;; esac
suffix=""
[ "$cuda" = 0 ] || suffix=-cuda
IMAGE=${IMAGE:-localhost/skillpack-server:0.1.0$suffix}
BASE_IMAGE=${BASE_IMAGE:-docker.io/library/debian:bookworm}
WORK_DIR=${WORK_DIR:-/var/tmp/skillpack-container}
JOBS=${JOBS:-$(nproc)}
CLI="$BUILD_DIR/cli/skillpack"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
t_start=$(date +%s)

say() { printf '== %s\n' "$*"; }
fail() { printf 'container-test: FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, buildah --isolation chroot)"
[ -x "$CLI" ] || fail "$CLI not found: build the project first (make build)"
missing=()
for tool in buildah:buildah debootstrap:debootstrap python3:python3; do
  command -v "${tool%%:*}" > /dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

# --- 1. the base image ------------------------------------------------------
debian_mirror() {
  local m
  m=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)[[:space:]]*$/\1/p' /etc/apt/sources.list.d/*.sources 2> /dev/null | head -n 1)
  [ -n "$m" ] || m=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2> /dev/null || true)
  echo "${m:-http://deb.debian.org/debian}"
}
t0=$(date +%s)
if buildah inspect --type image "$BASE_IMAGE" > /dev/null 2>&1; then
  say "base image $BASE_IMAGE present"
else
  mirror=${DEBIAN_MIRROR:-$(debian_mirror)}
  rootfs="$WORK_DIR/rootfs-bookworm"
  say "making $BASE_IMAGE: debootstrap --variant=minbase bookworm from $mirror"
  mkdir -p "$WORK_DIR"
  rm -rf "$rootfs"
  nice -n 10 debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$WORK_DIR/debootstrap.log" 2>&1 ||
    fail "debootstrap failed; see $WORK_DIR/debootstrap.log"
  # The sources of the official image (bookworm, -updates, -security).
  rm -f "$rootfs/etc/apt/sources.list"
  cat > "$rootfs/etc/apt/sources.list.d/debian.sources" << EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  tar --numeric-owner -C "$rootfs" -cf - . | tar --numeric-owner -C "$mnt" -xf -
  buildah umount "$ctr" > /dev/null
  buildah config --cmd bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" > /dev/null
  rm -rf "$rootfs"
fi
t_base=$(($(date +%s) - t0))

# --- 2. the image -------------------------------------------------------------
t0=$(date +%s)
build_args=(--build-arg JOBS="$JOBS" --build-arg DEBIAN_IMAGE="$BASE_IMAGE")
if [ "$cuda" = 1 ] && [ "${SKIP_BUILD:-0}" != 1 ]; then
  # No image registry here: the toolkit image is made from the local toolkit,
  # the parts a build needs (compiler, headers, cudart, cuBLAS) at the path
  # NVIDIA's images use.
  if [ -z "${CUDA_TOOLKIT_IMAGE:-}" ]; then
    CUDA_TOOLKIT_IMAGE=localhost/skillpack-cuda-toolkit:13.0
    if ! buildah inspect --type image "$CUDA_TOOLKIT_IMAGE" > /dev/null 2>&1; then
      cuda_home=$(readlink -f "${CUDA_HOME:-/usr/local/cuda}")
      "$cuda_home/bin/nvcc" --version | grep -q 'release 13\.' || fail "$cuda_home is not a CUDA 13 toolkit"
      say "making $CUDA_TOOLKIT_IMAGE from $cuda_home"
      tctr=$(buildah from scratch)
      tmnt=$(buildah mount "$tctr")
      dest="$tmnt/usr/local/cuda-13.0"
      mkdir -p "$dest/lib"
      cp -a "$cuda_home"/{bin,include,nvvm,targets} "$dest/"
      [ -e "$cuda_home/lib64" ] && cp -a "$cuda_home/lib64" "$dest/" 2> /dev/null || true
      libdir=$(readlink -f "$cuda_home/lib64")
      cp -a "$libdir"/{libcudart*,libcublas*,libcudadevrt.a,libculibos.a,stubs,cmake} "$dest/$(basename "$libdir")/" 2> /dev/null
      buildah umount "$tctr" > /dev/null
      buildah commit --quiet --rm "$tctr" "$CUDA_TOOLKIT_IMAGE" > /dev/null
    fi
  fi
  build_args+=(--build-arg CUDA_TOOLKIT_IMAGE="$CUDA_TOOLKIT_IMAGE")
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  say "building $IMAGE ($DOCKERFILE, JOBS=$JOBS)"
  build_log=$(mktemp /tmp/skillpack-container-build.XXXXXX)
  if ! nice -n 10 buildah bud --isolation chroot --pull=never --layers --format docker "${build_args[@]}" \
    -f "$ROOT/$DOCKERFILE" -t "$IMAGE" "$ROOT" > "$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    fail "buildah bud failed; full log in $build_log"
  fi
  grep -E '^(  Hits|  Misses|Cacheable calls)' "$build_log" | sed 's/^/   ccache: /' || true
  rm -f "$build_log"
fi
t_build=$(($(date +%s) - t0))

# --- 3. the image's configuration -------------------------------------------
t0=$(date +%s)
buildah inspect --type image "$IMAGE" > /dev/null 2>&1 || fail "no image $IMAGE"
config=$(buildah inspect --type image "$IMAGE" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["Docker"]["config"]))')
size=$(buildah images --format '{{.Size}}' "$IMAGE" | head -n 1)
python3 - "$config" << 'EOF' || fail "image configuration"
import json, sys
c = json.loads(sys.argv[1])
def check(ok, what):
    if not ok:
        sys.exit("image config: " + what + ": " + json.dumps(c))
check(c.get("Entrypoint") == ["skillpack-server"], "ENTRYPOINT is not [skillpack-server]")
check(c.get("User") not in (None, "", "0", "root") and not c["User"].startswith("0:"), "runs as root")
check("/var/lib/skillpack/packs" in (c.get("Volumes") or {}), "no VOLUME for the pack store")
for port in ("50051/tcp", "9090/tcp", "8000/tcp"):
    check(port in (c.get("ExposedPorts") or {}), "port " + port + " not exposed")
hc = (c.get("Healthcheck") or {}).get("Test") or []
check(hc[:1] == ["CMD"] and "health" in hc, "no HEALTHCHECK running `skillpack client health`")
EOF
say "image $IMAGE: $size, config checked"

# --- 4. the server inside a container -----------------------------------------
tmp=$(mktemp -d /tmp/skillpack-container-test.XXXXXX)
chmod 755 "$tmp"
ctr=""
run_pid=""
cleanup() {
  if [ -n "$run_pid" ] && kill -0 "$run_pid" 2> /dev/null; then
    for p in $(server_pids); do kill -TERM "$p" 2> /dev/null || true; done
    sleep 1
    for p in $(server_pids); do kill -KILL "$p" 2> /dev/null || true; done
    wait "$run_pid" 2> /dev/null || true
  fi
  [ -n "$ctr" ] && buildah rm "$ctr" > /dev/null 2>&1 || true
  rm -rf "$tmp"
}
# The server's host PIDs: the skillpack-server processes among the descendants
# of our `buildah run` (chroot isolation runs the command as a host process).
server_pids() {
  local todo=("$run_pid") p c
  while [ ${#todo[@]} -gt 0 ]; do
    p=${todo[0]}
    todo=("${todo[@]:1}")
    for c in $(cat /proc/"$p"/task/*/children 2> /dev/null); do
      if [ "$(cat /proc/"$c"/comm 2> /dev/null)" = skillpack-serve ]; then echo "$c"; fi
      todo+=("$c")
    done
  done
}
trap cleanup EXIT

"$CLI" model init-tiny --out "$tmp/model" --layers 2 --hidden 64 --heads 4 --kv-heads 2 --seed 1 > /dev/null
mkdir -p "$tmp/packs" "$tmp/admin"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$tmp/admin/token"
cp "$tmp/admin/token" "$tmp/token"
# As in Kubernetes: the pack store writable by the image's user, the token readable by it only.
uid_gid=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["User"])' "$config")
chown "$uid_gid" "$tmp/packs" "$tmp/admin/token"
chmod 0400 "$tmp/admin/token"

ctr=$(buildah from --pull=never --quiet "$IMAGE")
# `buildah run` mounts a fresh directory on each VOLUME of the image, over our
# -v bind mount of the same path (docker/podman run and Kubernetes let the
# bind mount win); drop the declaration in this working container only.
buildah config --volume /var/lib/skillpack/packs- "$ctr"
read -r -a entrypoint < <(python3 -c 'import json,sys; print(" ".join(json.loads(sys.argv[1])["Entrypoint"]))' "$config")
read -r -a cmd < <(python3 -c 'import json,sys; print(" ".join(json.loads(sys.argv[1])["Cmd"]))' "$config")
# The image's ENTRYPOINT + CMD as shipped. With chroot isolation the container
# has the host's network: when the default ports are taken, ask for free ones.
ports_free=1
python3 - << 'EOF' 2> /dev/null || ports_free=0
import socket
for port in (50051, 9090, 8000):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
EOF
if [ "$ports_free" = 0 ]; then  # the first occurrence of a flag wins: replace CMD's values
  for i in "${!cmd[@]}"; do
    case "${cmd[$i]}" in --grpc-port | --metrics-port | --http-port) cmd[$((i + 1))]=0 ;; esac
  done
fi
extra=(--grpc-address 127.0.0.1 --metrics-address 127.0.0.1 --admin-token-file /etc/skillpack/admin/token --threads 1)
# The OpenAI-compatible HTTP API, where this server has one.
http_api=0
server_help=$(buildah run --isolation chroot "$ctr" -- skillpack-server --help 2>&1) || fail "skillpack-server --help: $server_help"
if grep -q -- '--http-port' <<< "$server_help"; then
  http_api=1
  extra+=(--http-address 127.0.0.1)
  if [[ " ${cmd[*]} " != *" --http-port "* ]]; then  # the image's CMD turns it on; older images do not
    if [ "$ports_free" = 1 ]; then extra+=(--http-port 8000); else extra+=(--http-port 0); fi
  fi
fi
say "starting ${entrypoint[*]} ${cmd[*]} ${extra[*]}"
buildah run --isolation chroot \
  -v "$tmp/model:/models/base:ro" -v "$tmp/packs:/var/lib/skillpack/packs" -v "$tmp/admin:/etc/skillpack/admin:ro" \
  "$ctr" -- "${entrypoint[@]}" "${cmd[@]}" "${extra[@]}" > "$tmp/stdout" 2> "$tmp/server.log" &
run_pid=$!
for _ in $(seq 1 600); do
  grep -q '^listening' "$tmp/stdout" 2> /dev/null && break
  kill -0 "$run_pid" 2> /dev/null || { cat "$tmp/server.log" >&2; fail "the server exited at start-up"; }
  sleep 0.2
done
listening=$(grep '^listening' "$tmp/stdout") || { cat "$tmp/server.log" >&2; fail "no 'listening' line in 120 s"; }
echo "   $listening"
addr=$(echo "$listening" | sed -n 's/^listening grpc=\([^ ]*\).*/\1/p')
metrics=$(echo "$listening" | sed -n 's/.*metrics=\([^ ]*\).*/\1/p')
http=$(echo "$listening" | sed -n 's/.*http=\([^ ]*\).*/\1/p')

# The server runs as the image's user, not root.
pids=$(server_pids)
[ -n "$pids" ] || fail "cannot find the server's process"
for p in $pids; do
  uid=$(awk '/^Uid:/ {print $2}' /proc/"$p"/status)
  [ "$uid" = "${uid_gid%%:*}" ] || fail "server pid $p runs as uid $uid, not ${uid_gid%%:*}"
done
say "server pid $pids runs as uid ${uid_gid%%:*}"

# --- 5. checks from the host ----------------------------------------------------
out=$("$CLI" client health --server "$addr") || fail "health: $out"
[ "$out" = SERVING ] || fail "health answered '$out'"
out=$("$CLI" client health --server "$addr" --service skillpack.v1.Inference) || fail "health (Inference): $out"
say "gRPC health: SERVING"

prompt="The container says"
expected=$("$CLI" generate --model "$tmp/model" --prompt "$prompt" --max-new-tokens 12 --ignore-eos --threads 1 2> /dev/null)
got=$("$CLI" client generate --server "$addr" --prompt "$prompt" --max-new-tokens 12 --ignore-eos --no-packs 2> "$tmp/gen.err") ||
  fail "Generate: $(cat "$tmp/gen.err")"
[ "$got" = "$expected" ] || fail "Generate differs from offline generation on the host"
say "Generate: 12 tokens, identical to offline generation on the host"

# A pack made on the host, uploaded through the Admin API: stored in the volume, by the image's user.
"$CLI" model init-tiny --out "$tmp/tuned" --layers 2 --hidden 64 --heads 4 --kv-heads 2 --seed 2 > /dev/null
"$CLI" pack create --base "$tmp/model" --tuned "$tmp/tuned" --name probe -o "$tmp/probe.skillpack" --threads 1 \
  > /dev/null 2>&1 || fail "pack create"
"$CLI" client packs upload "$tmp/probe.skillpack" --server "$addr" --admin-token-file "$tmp/token" > /dev/null ||
  fail "pack upload through the Admin API"
stored=$(find "$tmp/packs" -name 'probe*.skillpack' | head -n 1)
[ -n "$stored" ] || fail "the uploaded pack is not in the pack store volume: $(ls -la "$tmp/packs")"
owner=$(stat -c '%u' "$stored")
[ "$owner" = "${uid_gid%%:*}" ] || fail "the stored pack belongs to uid $owner"
cmp -s "$stored" "$tmp/probe.skillpack" || fail "the stored pack differs from the uploaded file"
"$CLI" client generate --server "$addr" --prompt "$prompt" --max-new-tokens 4 --pack probe > /dev/null 2> "$tmp/gen.err" ||
  fail "Generate with the uploaded pack: $(cat "$tmp/gen.err")"
say "pack upload: stored in the volume as uid $owner; Generate with it works"

http_get() {  # http_get HOST:PORT PATH -> body (fails unless 200)
  python3 - "$1" "$2" << 'EOF'
import sys, urllib.request
with urllib.request.urlopen("http://" + sys.argv[1] + sys.argv[2], timeout=10) as r:
    if r.status != 200:
        sys.exit("HTTP %d" % r.status)
    sys.stdout.write(r.read().decode())
EOF
}
body=$(http_get "$metrics" /metrics) || fail "GET /metrics"
python3 - "$body" << 'EOF' || fail "/metrics"
import sys
samples = {}
for line in sys.argv[1].splitlines():
    if line and not line.startswith("#"):
        name = line.split("{")[0].split(" ")[0]
        samples[name] = samples.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
for name in ("skillpack_build_info", "skillpack_requests_total", "skillpack_kv_cache_usage_ratio"):
    if name not in samples:
        sys.exit("/metrics has no " + name)
if samples.get("skillpack_generated_tokens_total", 0) < 16:
    sys.exit("skillpack_generated_tokens_total < 16 after 12 + 4 generated tokens")
EOF
[ "$(http_get "$metrics" /healthz)" = ok ] || fail "GET /healthz"
say "GET /metrics and /healthz: ok"

if [ "$http_api" = 1 ]; then
  [ -n "$http" ] || fail "the server has --http-port but printed no http= address"
  models=$(http_get "$http" /v1/models) || fail "GET /v1/models"
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["object"]=="list" and d["data"], d' "$models" ||
    fail "GET /v1/models: $models"
  say "OpenAI-compatible API: GET /v1/models ok"
else
  say "OpenAI-compatible API: not in this server (no --http-port); skipped"
fi

# The image's HEALTHCHECK command, run inside the container (on the port in use).
read -r -a hc < <(python3 -c 'import json,sys; print(" ".join(json.loads(sys.argv[1])["Healthcheck"]["Test"][1:]))' "$config")
if [ "$ports_free" = 0 ]; then
  for i in "${!hc[@]}"; do [ "${hc[$i]}" != 127.0.0.1:50051 ] || hc[$i]=$addr; done
fi
out=$(buildah run --isolation chroot "$ctr" -- "${hc[@]}" 2>&1) || fail "HEALTHCHECK ${hc[*]}: $out"
say "HEALTHCHECK (${hc[*]}): $out"

# The GPU image: its kernels' test suite runs (the GPU cases skip without a device).
if [ "$cuda" = 1 ]; then
  out=$(buildah run --isolation chroot "$ctr" -- skillpack-kernels-test 2>&1) ||
    { echo "$out" | tail -n 30 >&2; fail "skillpack-kernels-test"; }
  say "skillpack-kernels-test: $(echo "$out" | grep -E '^\[  PASSED  \]|^\[  SKIPPED \] [0-9]' | tr '\n' ' ')"
fi

# SIGTERM: a graceful shutdown and exit status 0.
for p in $(server_pids); do kill -TERM "$p"; done
rc=0
wait "$run_pid" || rc=$?
run_pid=""
[ "$rc" = 0 ] || { tail -n 20 "$tmp/server.log" >&2; fail "the server exited with $rc after SIGTERM"; }
say "SIGTERM: the server exited 0"
t_run=$(($(date +%s) - t0))

echo "container-test: OK (base image ${t_base} s, image build ${t_build} s, run and checks ${t_run} s," \
  "total $(($(date +%s) - t_start)) s; image $size)"
