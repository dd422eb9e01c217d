#!/usr/bin/env bash
# The test command: lint, type-check, dependency check, then every test (lab tests bring up a
# small lab fleet). Everything runs from the project's virtual environment (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV_BIN=.venv/bin
[[ -x $VENV_BIN/pytest ]] || { echo "test: no $VENV_BIN/pytest: run scripts/setup.sh first" >&2; exit 2; }
export PATH="$PWD/$VENV_BIN:$PATH"  # as if activated: ansible-inventory, ansible-lint for the tests
# Every Python process of the suite (each pytest worker's collection, each CLI the tests start,
# each Ansible worker that loads the action) compiles a module once, not every time: where
# PYTHONDONTWRITEBYTECODE is set (as in some CI images) each one compiled the package and
# rewrote the tests' asserts from source. The bytecode goes under the venv, not the checkout.
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX="$PWD/.venv/pycache"
"$VENV_BIN/ruff" check .
"$VENV_BIN/ruff" format --check .
"$VENV_BIN/mypy"
"$VENV_BIN/deptry" .
# Two workers, each running whole test files (a file's lab and fixtures stay on one worker;
# each worker brings up its own session lab on its own share of the 127.0.K.x ranges): the lab
# tests spend much of their time waiting on hosts, so the second core does not sit idle.
# `-n 0` among the arguments runs everything in one process. (-m: the checkout on sys.path.)
"$VENV_BIN/python" -m pytest -q -n 2 --dist loadfile "$@"
