#!/usr/bin/env bash
# docker_image.sh: builds the connector's image from the Dockerfile with a real Docker daemon, on a
# stand-in of its base image (Docker Hub, where airbyte/python-connector-base lives, cannot be
# reached here). .ci/run runs it before the tests; integration_tests/test_image.py runs the image it
# builds (and runs this script itself when DESTINATION_REDIS_IMAGE is not given).
#
# 1. The stand-in of python-connector-base, made from Debian packages: bookworm by debootstrap
#    (--variant=minbase) with python3 (3.11), python3-pip, python3-venv and ca-certificates; a venv
#    at /usr/local, so `python` and `pip` are /usr/local/bin/python and pip as in the real base and
#    pip may install there (PEP 668 does not apply in a venv); the user airbyte (uid 1000) owning
#    /airbyte, /secrets and /config; the host's CA bundle and pip configuration (/etc/pip.conf,
#    /etc/xdg/pip/pip.conf, ~/.config/pip/pip.conf, PIP_INDEX_URL and the like), so that pip in
#    the build reaches the package index the host uses. `docker import` of the chroot's tar, with
#    USER root (the real base also builds as root) and ENV set by --change. Tagged
#    destination-redis-base-standin:bookworm-<hash of this recipe and of those host files>, and
#    not rebuilt while that tag exists: cached between runs on one machine.
# 2. The Dockerfile, built with --build-arg BASE_IMAGE=<the stand-in> and --network host (pip
#    reaches the index as the host does; the daemon runs without a bridge), from a context of just
#    the Dockerfile and what its COPY lines name (not .venv, .cache or .git). The dependencies are
#    a layer of their own: a rebuild after a code change reuses it.
#
# Prints how long each step took. The last line is DESTINATION_REDIS_IMAGE=<the built tag>. Exit
# status 3: this machine cannot build it (no Docker daemon; or not root, or no debootstrap, for the
# stand-in); any other failure: 1.
# Environment: DESTINATION_REDIS_IMAGE (the tag to build, default airbyte/destination-redis:dev);
# DEBIAN_MIRROR (default: the host's apt mirror of bookworm, else http://deb.debian.org/debian);
# http(s)_proxy / no_proxy are passed to debootstrap and to the build.
# Needs a Docker daemon that answers (scripts/dockerd.sh start), and root plus debootstrap when the
# stand-in is not cached yet.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

IMAGE="${DESTINATION_REDIS_IMAGE:-airbyte/destination-redis:dev}"
STANDIN_REPO="destination-redis-base-standin"
SUITE="bookworm"
STANDIN_PACKAGES="python3,python3-pip,python3-venv,ca-certificates"
HOST_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt"
export DOCKER_BUILDKIT=0  # the classic builder: Debian's docker.io has no buildx plugin

work="$(mktemp -d /var/tmp/destination-redis-image.XXXXXX)"
cleanup() {
  local status=$?
  # debootstrap mounts /proc and /sys in the chroot; unmount anything left before removing it.
  if [ -d "$work/rootfs" ]; then
    awk -v root="$work/rootfs" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r \
      | while read -r mount_point; do umount -l "$mount_point" 2>/dev/null || true; done
  fi
  rm -rf --one-file-system "$work"
  return "$status"
}
trap cleanup EXIT

timings=()
# timed LABEL COMMAND...: runs the command, prints and records how long it took.
timed() {
  local label="$1" start end
  shift
  start="$(date +%s.%N)"
  "$@"
  end="$(date +%s.%N)"
  local seconds
  seconds="$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')"
  echo "-- $label: ${seconds}s"
  timings+=("$label: ${seconds}s")
}

# run_logged LOG COMMAND...: the command's output goes to LOG, shown (its end) only when it fails.
run_logged() {
  local log="$1"
  shift
  if ! "$@" >"$log" 2>&1; then
    echo "failed: $*; the end of its output:" >&2
    tail -n 60 "$log" >&2
    return 1
  fi
}

# --- the host's settings the stand-in carries --------------------------------------------------

# The host's apt mirror of the suite (one-line and deb822 sources), for debootstrap.
host_mirror() {
  local file
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    awk -v suite="$SUITE" '$1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }' "$file"
  done
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    awk -v suite="$SUITE" 'BEGIN { RS = "" } {
        uris = ""; suites = ""; n = split($0, lines, "\n")
        for (j = 1; j <= n; j++) {
          if (lines[j] ~ /^URIs:/) { uris = lines[j]; sub(/^URIs:[ \t]*/, "", uris) }
          if (lines[j] ~ /^Suites:/) { suites = " " lines[j] " " }
        }
        if (uris != "" && suites ~ ("[ \t]" suite "[ \t]")) { split(uris, u, /[ \t]+/); print u[1]; exit }
      }' "$file"
  done
}

# pip's configuration files of the host, as "host path<TAB>path in the stand-in". The build runs
# pip as root, so the user file goes to /root/.config/pip/pip.conf.
pip_config_files() {
  local file
  for file in /etc/pip.conf /etc/xdg/pip/pip.conf; do
    [ -f "$file" ] && printf '%s\t%s\n' "$file" "$file"
  done
  file="${XDG_CONFIG_HOME:-$HOME/.config}/pip/pip.conf"
  [ -f "$file" ] && printf '%s\t%s\n' "$file" /root/.config/pip/pip.conf
  file="$HOME/.pip/pip.conf"
  [ -f "$file" ] && printf '%s\t%s\n' "$file" /root/.pip/pip.conf
  if [ -n "${PIP_CONFIG_FILE:-}" ] && [ -f "$PIP_CONFIG_FILE" ]; then
    printf '%s\t%s\n' "$PIP_CONFIG_FILE" "$PIP_CONFIG_FILE"
  fi
  return 0
}

# The pip settings of the host's environment that the stand-in's ENV carries, as NAME="value" (a
# Dockerfile's ENV syntax: several URLs separated by spaces stay one value).
PIP_ENV_NAMES=(PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_CERT PIP_CONFIG_FILE)
pip_env() {
  local name value
  for name in "${PIP_ENV_NAMES[@]}"; do
    value="${!name:-}"
    if [ -n "$value" ]; then
      value="${value//\\/\\\\}"
      value="${value//\"/\\\"}"
      value="${value//\$/\\\$}"
      printf '%s="%s"\n' "$name" "$value"
    fi
  done
}

# Files that pip's settings name (`cert =`, `constraint =` ... in its configuration files, PIP_CERT):
# pip fails when one is missing, so each is copied to the same path in the stand-in. Directories
# (find-links, file:// indexes) are not copied: pip only warns about those.
pip_referenced_files() {
  {
    pip_config_files | cut -f1 | while read -r file; do
      sed -n 's/^[^#;=]*=//p' "$file" | tr -s ' \t' '\n'
    done
    if [ -n "${PIP_CERT:-}" ]; then echo "$PIP_CERT"; fi
  } | sed -n 's|^file://||; /^\//p' | sort -u | while read -r file; do
    if [ -f "$file" ]; then echo "$file"; fi
  done
}

# --- the stand-in's recipe (its hash names the image) -------------------------------------------

make_rootfs() {
  local rootfs="$1" mirror="$2"
  run_logged "$work/debootstrap.log" \
    debootstrap --variant=minbase --include="$STANDIN_PACKAGES" "$SUITE" "$rootfs" "$mirror"
}

configure_rootfs() {
  local rootfs="$1" host_path inner_path
  # python and pip on PATH, installing into /usr/local as in the real base.
  chroot "$rootfs" python3 -m venv /usr/local
  chroot "$rootfs" /usr/local/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version'
  chroot "$rootfs" useradd --uid 1000 --user-group --no-create-home --home-dir /home/airbyte \
    --shell /usr/sbin/nologin airbyte
  mkdir -p "$rootfs/airbyte" "$rootfs/secrets" "$rootfs/config"
  chmod 755 "$rootfs/airbyte" "$rootfs/secrets" "$rootfs/config"
  chown 1000:1000 "$rootfs/airbyte" "$rootfs/secrets" "$rootfs/config"
  ln -snf /usr/share/zoneinfo/Etc/UTC "$rootfs/etc/localtime"
  # The host's trust store and pip settings: pip reaches the index the way the host does.
  cp "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  while IFS=$'\t' read -r host_path inner_path; do
    mkdir -p "$rootfs$(dirname "$inner_path")"
    cp "$host_path" "$rootfs$inner_path"
  done < <(pip_config_files)
  while read -r host_path; do
    mkdir -p "$rootfs$(dirname "$host_path")"
    cp "$host_path" "$rootfs$host_path"
  done < <(pip_referenced_files)
  rm -rf "${rootfs:?}"/var/cache/apt/archives/*.deb "${rootfs:?}"/var/lib/apt/lists/* "${rootfs:?}"/dev/* \
    "${rootfs:?}"/var/log/*.log
}

# The --change instructions of `docker import`: what a Dockerfile of the base image would set.
standin_changes() {
  local line
  echo "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  echo "ENV LANG=C.UTF-8"
  while read -r line; do echo "ENV $line"; done < <(pip_env)
  echo "WORKDIR /"
  echo "USER root"
  echo 'CMD ["python"]'
}

recipe_hash() {
  {
    declare -f make_rootfs configure_rootfs standin_changes pip_config_files pip_referenced_files pip_env
    echo "$SUITE $STANDIN_PACKAGES"
    standin_changes
    sha256sum "$HOST_CA_BUNDLE" | cut -d' ' -f1
    pip_config_files | while IFS=$'\t' read -r host_path inner_path; do
      echo "$inner_path $(sha256sum "$host_path" | cut -d' ' -f1)"
    done
    pip_referenced_files | while read -r file; do echo "$file $(sha256sum "$file" | cut -d' ' -f1)"; done
  } | sha256sum | cut -c1-12
}

import_rootfs() {
  local rootfs="$1" tag="$2" hash="$3" change
  local args=(--change "LABEL io.destination-redis.standin-recipe=$hash")
  while read -r change; do args+=(--change "$change"); done < <(standin_changes)
  tar --numeric-owner -C "$rootfs" -c . | docker import "${args[@]}" - "$tag" >/dev/null
}

# --- the steps --------------------------------------------------------------------------------

CANNOT_BUILD_HERE=3  # the exit status when this machine lacks what the build needs (not a failure of it)
if ! docker info >/dev/null 2>&1; then
  echo "docker_image.sh: no Docker daemon answers (start one: bash scripts/dockerd.sh start)" >&2
  exit "$CANNOT_BUILD_HERE"
fi

recipe="$(recipe_hash)"
standin="$STANDIN_REPO:$SUITE-$recipe"
if docker image inspect "$standin" >/dev/null 2>&1; then
  echo "== stand-in base image $standin: cached (built $(docker image inspect --format '{{.Created}}' "$standin"))"
  timings+=("stand-in base image: cached")
else
  if [ "$(id -u)" != 0 ] || ! command -v debootstrap >/dev/null 2>&1; then
    echo "docker_image.sh: building the stand-in base image needs root and debootstrap" \
      "(apt-get install debootstrap; .ci/run does)" >&2
    exit "$CANNOT_BUILD_HERE"
  fi
  mirror="${DEBIAN_MIRROR:-$(host_mirror | head -n 1)}"
  mirror="${mirror:-http://deb.debian.org/debian}"
  echo "== stand-in base image $standin: not cached, building it (debootstrap $SUITE from $mirror)"
  timed "debootstrap (minbase $SUITE + $STANDIN_PACKAGES)" make_rootfs "$work/rootfs" "$mirror"
  timed "configure the chroot (venv at /usr/local, user airbyte, CA bundle, pip settings)" \
    configure_rootfs "$work/rootfs"
  timed "docker import" import_rootfs "$work/rootfs" "$standin" "$recipe"
  rm -rf --one-file-system "$work/rootfs"
fi
# What the Dockerfile's RUN lines get from the base: python and pip on PATH; and the user it ends with.
docker run --rm --network none "$standin" sh -c 'echo "   stand-in: $(python --version), $(pip --version | cut -d" " -f1-2), $(id airbyte)"'

# The build context: the Dockerfile and the paths its COPY lines name (one source of truth).
sources=()
while read -r -a words; do
  [ "${words[0]:-}" = "COPY" ] || continue
  for word in "${words[@]:1:${#words[@]}-2}"; do
    case "$word" in --*) ;; *) sources+=("$word") ;; esac
  done
done < Dockerfile
tar -c -f "$work/context.tar" --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
  Dockerfile "${sources[@]}"

proxy_args=()
for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  if [ -n "${!name:-}" ]; then proxy_args+=(--build-arg "$name"); fi
done

build_image() {
  local log="$work/build.log"
  if ! docker build --force-rm --network host --build-arg "BASE_IMAGE=$standin" "${proxy_args[@]}" \
      --tag "$IMAGE" - <"$work/context.tar" >"$log" 2>&1; then
    echo "docker build failed; the end of its output:" >&2
    tail -n 80 "$log" >&2
    return 1
  fi
  # The Dockerfile's steps, and which of them came from the layer cache.
  awk '/^Step [0-9]+\/[0-9]+ :/ { if (step != "") print step (cached ? "  (cached)" : ""); step = $0; cached = 0 }
       /Using cache/ { cached = 1 }
       END { if (step != "") print step (cached ? "  (cached)" : "") }' "$log" | sed 's/^/   /'
}
echo "== $IMAGE: docker build --build-arg BASE_IMAGE=$standin --network host (context: Dockerfile ${sources[*]})"
timed "image build" build_image
# What older builds left (the images this tag had before, failed builds: every image built on a
# stand-in carries its label), then the stand-ins of older recipes (another host CA bundle, a
# changed script), which nothing is built on any more. Layers that the current image uses stay.
docker image prune --force --filter "label=io.destination-redis.standin-recipe" >/dev/null
docker image ls --format '{{.Repository}}:{{.Tag}}' "$STANDIN_REPO" | while read -r old; do
  if [ "$old" != "$standin" ]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
done

echo "== timings"
printf '   %s\n' "${timings[@]}"
echo "DESTINATION_REDIS_IMAGE=$IMAGE"
