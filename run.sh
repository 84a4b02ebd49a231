#!/usr/bin/env bash
# Set up and start bmsgate on this machine (a simulated pack when no serial port is configured).
# Extra arguments go to `bmsgate run`, e.g. ./run.sh --config bmsgate.yaml
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh run
exec .venv/bin/bmsgate run "$@"
