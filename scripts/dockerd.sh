#!/usr/bin/env bash
# dockerd.sh start|stop: a Docker daemon for the image test (scripts/docker_image.sh builds the
# image, integration_tests/test_image.py runs it); .ci/run starts it and stops it on exit.
#
#   start  When a daemon already answers `docker info`, uses it and records nothing: that daemon is
#          not ours to stop. Otherwise starts Debian's dockerd (package docker.io) in the background
#          without iptables rules, IP forwarding or the default bridge (containers run with
#          --network host), logging to $DOCKERD_LOG, and waits until `docker info` answers.
#   stop   Stops the daemon that `start` started (its pid is in $DOCKERD_PIDFILE) and the
#          containerd it runs; never another one. Images stay (/var/lib/docker): the stand-in base
#          image and the layers of the last build are reused by the next run.
#
# Needs root. DOCKERD_LOG (default /var/log/destination-redis-dockerd.log), DOCKERD_PIDFILE
# (default /run/destination-redis-dockerd.pid), DOCKERD_START_TIMEOUT (seconds, default 60).
set -euo pipefail

log="${DOCKERD_LOG:-/var/log/destination-redis-dockerd.log}"
pidfile="${DOCKERD_PIDFILE:-/run/destination-redis-dockerd.pid}"
timeout="${DOCKERD_START_TIMEOUT:-60}"

answers() { docker info >/dev/null 2>&1; }

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# Waits up to $2 seconds for process $1 to end; fails if it is still there.
wait_gone() {
  local pid="$1" deadline=$((SECONDS + $2))
  while alive "$pid"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

start() {
  if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
    echo "dockerd.sh: docker and dockerd are needed: apt-get install docker.io (.ci/run does)" >&2
    return 1
  fi
  if answers; then
    echo "A Docker daemon already answers (server $(docker version --format '{{.Server.Version}}' 2>/dev/null)): using it, not stopping it."
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "dockerd.sh: no Docker daemon answers, and starting one needs root" >&2
    return 1
  fi
  if alive "$(cat "$pidfile" 2>/dev/null || true)"; then
    echo "dockerd.sh: the dockerd of $pidfile (pid $(cat "$pidfile")) runs but does not answer; see $log" >&2
    return 1
  fi
  mkdir -p "$(dirname "$log")" "$(dirname "$pidfile")"
  echo "Starting dockerd $(dockerd --version | sed 's/^Docker version //') (log: $log)"
  # setsid: its own session, so a Ctrl-C in the terminal of the caller reaches it only via `stop`.
  setsid dockerd --iptables=false --ip-forward=false --ip-masq=false --bridge=none \
    >"$log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$pidfile"
  local deadline=$((SECONDS + timeout))
  until answers; do
    if ! alive "$pid" || [ "$SECONDS" -ge "$deadline" ]; then
      echo "dockerd.sh: dockerd did not answer within ${timeout}s; the end of $log:" >&2
      tail -n 30 "$log" >&2 || true
      stop >&2 || true
      return 1
    fi
    sleep 0.2
  done
  echo "dockerd answers (pid $pid, server $(docker version --format '{{.Server.Version}}'))."
}

stop() {
  local pid
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if [ -z "$pid" ]; then
    return 0  # none started by `start` (or a daemon that was already there)
  fi
  if alive "$pid"; then
    # dockerd's own containerd: ended by dockerd when it stops, killed below if it lingers.
    local containerd_pid
    containerd_pid="$(cat /var/run/docker/containerd/containerd.pid 2>/dev/null || true)"
    echo "Stopping dockerd (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 30; then
      echo "dockerd (pid $pid) did not stop within 30s: killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 10 || true
    fi
    if alive "$containerd_pid"; then
      kill -TERM "$containerd_pid" 2>/dev/null || true
      wait_gone "$containerd_pid" 10 || kill -KILL "$containerd_pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
