#!/usr/bin/env bash
# The demo command of the README: writes the bundled sample into a throwaway local redis-server
# (free loopback port, temporary folder, stopped afterwards) with the real `destination-redis write`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v redis-server >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  bash scripts/apt-install.sh redis-server || true  # if that fails, the demo says how to get it
fi
# shellcheck source=scripts/venv.sh
source scripts/venv.sh
exec "$VENV/bin/python" -m destination_redis.demo "$@"
