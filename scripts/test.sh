#!/usr/bin/env bash
# The test command of the README and of CI: unit tests, and integration tests that start their own
# redis-server processes on free loopback ports. Extra arguments go to pytest (e.g. -k overwrite -x).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/venv.sh
source scripts/venv.sh
# The server matrix: tests marked `core` run on every server of integration_tests/matrix.py
# (Redis 2.8 to 8.2, Valkey 8.1), the others on Debian's 7.0. scripts/build_redis.sh makes the
# missing servers into .cache/redis (about 2 minutes the first time). REDIS_MATRIX= skips the matrix.
export REDIS_MATRIX="${REDIS_MATRIX-all}"
if [ -n "$REDIS_MATRIX" ]; then bash scripts/build_redis.sh; fi
exec "$VENV/bin/python" -m pytest unit_tests integration_tests "$@"
