#!/usr/bin/env bash
# Set up and run the whole check: lint, formatting, strict types, then every test.
# Extra arguments go to pytest, e.g. ./test.sh -k daly
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"
