#!/usr/bin/env bash
# The server matrix: make the servers that are missing (scripts/build_redis.sh, cached in
# .cache/redis), then run the core integration suite (tests marked `core`) once per server:
# Redis 2.8, 3.0, 3.2, 5.0, 6.2, 7.0, 8.2 (with RediSearch and RedisJSON) and Valkey 8.1.
# REDIS_MATRIX=2.8,7.0 picks servers; extra arguments go to pytest (e.g. -x -k overwrite).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/venv.sh
source scripts/venv.sh
bash scripts/build_redis.sh
REDIS_MATRIX="${REDIS_MATRIX:-all}" exec "$VENV/bin/python" -m pytest -m core integration_tests "$@"
