#!/bin/sh
# The entrypoint of every bmsgate container in the compose stack (docker-compose.yml), then the
# service itself (exec: it is PID 1 and gets SIGTERM).
#  * /config is the volume bmsgate-config: the first start copies deploy/bmsgate.yaml there
#    (mounted at /seed), so the web UI's Settings and setup can save; a container that mounts it
#    read-only waits for the one that seeds it.
#  * MQTT_PASSWORD_FILE: the broker password is read from this file (a reader's, made by mosquitto
#    at its first start) instead of the environment.
#  * SIMULATE=<protocol> (the sim profile): a simulated bus on a pty linked at SIMULATE_PORT,
#    where the serial adapter would be.
set -eu
cfg="${BMSGATE_CONFIG:-/config/bmsgate.yaml}"
if [ ! -e "$cfg" ]; then
  if [ -w "$(dirname "$cfg")" ]; then
    cp /seed/bmsgate.yaml "$cfg.seed.$$"
    mv -n "$cfg.seed.$$" "$cfg"  # another container may have seeded it meanwhile: same content
    rm -f "$cfg.seed.$$"
    echo "configuration seeded from deploy/bmsgate.yaml into $cfg" >&2
  else
    i=0
    while [ ! -e "$cfg" ] && [ "$i" -lt 120 ]; do sleep 0.5; i=$((i + 1)); done
  fi
fi
if [ -n "${MQTT_PASSWORD_FILE:-}" ]; then
  BMSGATE_MQTT__PASSWORD="$(cat "$MQTT_PASSWORD_FILE")"
  export BMSGATE_MQTT__PASSWORD
fi
if [ -n "${SIMULATE:-}" ]; then
  bmsgate simulate --protocol "$SIMULATE" --pty --link "${SIMULATE_PORT:?with SIMULATE}" >/dev/null &
  i=0
  while [ ! -e "$SIMULATE_PORT" ] && [ "$i" -lt 120 ]; do sleep 0.5; i=$((i + 1)); done
fi
exec "$@"
