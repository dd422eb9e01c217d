#!/usr/bin/env bash
# The test command: lint, type-check, dependency check, then every test (lab tests bring up a
# small lab fleet). Everything runs from the project's virtual environment (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV_BIN=.venv/bin
[[ -x $VENV_BIN/pytest ]] || { echo "test: no $VENV_BIN/pytest: run scripts/setup.sh first" >&2; exit 2; }
export PATH="$PWD/$VENV_BIN:$PATH"  # as if activated: ansible-inventory, ansible-lint for the tests
"$VENV_BIN/ruff" check .
"$VENV_BIN/ruff" format --check .
"$VENV_BIN/mypy"
"$VENV_BIN/deptry" .
"$VENV_BIN/python" -m pytest -q "$@"  # -m: the checkout on sys.path, for tests.*
