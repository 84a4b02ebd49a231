#!/usr/bin/env bash
# The compose lane's engine and images (tests/ecosystem/test_compose_stack.py runs this):
# Debian's docker.io and Compose v2, dockerd started by hand, stand-ins for the images no registry
# gives here, and the stack's bmsgate images built from the project's Dockerfile. Needs root;
# everything is cached outside the clone (scripts/docker_engine.sh, $BMSGATE_DOCKER_CACHE), so a
# second run only rebuilds what changed. Prints one "seconds <step> <n>" line per step.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/docker_engine.sh
[[ $(id -u) == 0 ]] || { echo "needs root (dockerd, mmdebstrap, apt-get)" >&2; exit 1; }
step() {  # NAME COMMAND...: run it, print how long it took
  local start=$SECONDS
  "${@:2}"
  echo "seconds $1 $((SECONDS - start))"
}
step tools engine_tools
step engine engine_start
step standins engine_standins
step compose-standins engine_compose_standins
# the images the stack's sim profile runs (the serial readers' image too: same Dockerfile)
step build engine_build api bmsgate history modbus notifier publisher tunnel
