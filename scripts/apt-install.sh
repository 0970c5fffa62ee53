#!/usr/bin/env bash
# apt-install.sh PACKAGE...: install Debian packages non-interactively, without starting their
# services (the tests and the demo start their own redis-server / sshd on free loopback ports).
# Needs root (or sudo) and apt-get; used by scripts/demo.sh and .ci/run.
set -euo pipefail
[ "$#" -gt 0 ] || exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-install.sh: apt-get not found; install these yourself: $*" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "apt-install.sh: need root to install: $*" >&2
    exit 1
  fi
fi
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
  # "exit 101" tells invoke-rc.d not to start services that the packages bring.
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  made_policy=1
fi
cleanup() { if [ -n "$made_policy" ]; then $sudo rm -f "$policy"; fi; }
trap cleanup EXIT
echo "Installing Debian packages: $*"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
