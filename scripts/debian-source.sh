# Sourced by scripts/build-sanitized-{abseil,grpc}.sh, which build a Debian
# source package into a cached prefix.
#
#   start_prefix PREFIX
#
# prints PREFIX/lib and exits the script (0) when PREFIX holds a finished
# build (PREFIX/.complete); else empties PREFIX and sets WORK=PREFIX.work, a
# fresh scratch folder, for the build.
start_prefix() {
  if [ -f "$1/.complete" ]; then
    echo "$1/lib"
    exit 0
  fi
  WORK=$1.work
  rm -rf "$WORK" "$1"
  mkdir -p "$WORK"
}

# Fetches the package's upstream tarball (.orig.tar.gz) and its debian/
# tarball (.debian.tar.xz) from a pool, checks each against its pinned
# SHA-256, and unpacks them with Debian's patches applied, as dpkg-source
# would.
#
#   unpack_debian_source WHO WORK POOL ORIG ORIG_SHA256 DEBIAN DEBIAN_SHA256
#
# leaves the patched tree in WORK/src (WORK must exist). WHO names the calling
# script in the error messages; on an error the shell exits 1.
unpack_debian_source() {
  local who=$1 work=$2 pool=$3 orig=$4 orig_sha=$5 debian=$6 debian_sha=$7
  local file sum patch
  for file in "$orig" "$debian"; do
    sum=$orig_sha
    [ "$file" = "$debian" ] && sum=$debian_sha
    if ! curl -fsSL --retry 3 -o "$work/$file" "$pool/$file"; then
      echo "$who: cannot download $pool/$file" >&2
      exit 1
    fi
    if ! echo "$sum  $work/$file" | sha256sum -c --quiet - >&2; then
      echo "$who: $file does not match its pinned SHA-256 $sum" >&2
      exit 1
    fi
  done
  mkdir -p "$work/src"
  tar -xzf "$work/$orig" -C "$work/src" --strip-components=1
  tar -xJf "$work/$debian" -C "$work/src"
  while read -r patch; do
    case "$patch" in '' | '#'*) continue ;; esac
    patch -d "$work/src" -p1 --quiet --forward <"$work/src/debian/patches/$patch" >&2
  done <"$work/src/debian/patches/series"
}
