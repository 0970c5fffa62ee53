#!/usr/bin/env bash
# The test command of the README and of CI: unit tests, and integration tests that start their own
# redis-server processes on free loopback ports. Extra arguments go to pytest (e.g. -k overwrite -x).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/venv.sh
source scripts/venv.sh
exec "$VENV/bin/python" -m pytest unit_tests integration_tests "$@"
