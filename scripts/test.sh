#!/usr/bin/env bash
# The test command: lint, type-check, then every test (lab tests bring up a small lab fleet).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
ruff format --check .
mypy
python3 -m pytest -q "$@"
