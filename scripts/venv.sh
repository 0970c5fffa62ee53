# Sourced by scripts/test.sh, scripts/demo.sh and .ci/run: makes sure .venv exists and holds the
# pinned set, installed the one way the tests, the demo and CI use:
#   pip install -c constraints.txt -e '.[tests]'
# It reinstalls only when setup.py, pyproject.toml or constraints.txt changed since the last install.
# Override the interpreter with PYTHON=python3.11, the location with VENV=/path.

_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$_repo/.venv}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating $VENV with $("${PYTHON:-python3}" --version 2>&1)"
  "${PYTHON:-python3}" -m venv "$VENV"
fi

_stamp="$("$VENV/bin/python" - "$_repo" <<'PY'
import hashlib, pathlib, sys
root = pathlib.Path(sys.argv[1])
digest = hashlib.sha256()
for name in ("setup.py", "pyproject.toml", "constraints.txt"):
    digest.update((root / name).read_bytes())
print(digest.hexdigest()[:16])
PY
)"
if [ "$(cat "$VENV/.installed" 2>/dev/null || true)" != "$_stamp" ]; then
  echo "Installing destination-redis and its pinned dependencies into $VENV"
  # pip's output goes to a log, shown only when the install fails.
  if ! (cd "$_repo" && "$VENV/bin/python" -m pip install -c constraints.txt -e '.[tests]') \
      >"$VENV/pip-install.log" 2>&1; then
    cat "$VENV/pip-install.log" >&2
    echo "pip install failed (log: $VENV/pip-install.log)" >&2
    exit 1
  fi
  echo "$_stamp" > "$VENV/.installed"
fi
unset _repo _stamp
