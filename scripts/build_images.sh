#!/usr/bin/env bash
# Build bmsgate's images for real on a Debian bookworm machine with no container registry, then
# start one and check it: scripts/build_images.sh [TARGET...]   (default: every docker-bake.json target)
#
# What it does (docs/release.md, "Building the images here"; needs root, about 11 min from nothing):
#   1. a Docker engine: Debian's docker.io, dockerd started by hand (no systemd), its data in $CACHE,
#      and Compose v2 (scripts/docker_engine.sh, shared with the test suite's compose lane);
#   2. local stand-ins under the exact base image names the Dockerfile's FROM lines use, since no
#      registry is reachable: python/node from an mmdebstrap bookworm minbase with Debian's python3 or
#      nodejs+npm (linked where the official images keep them), uv from PyPI's wheel at the tag's version;
#   3. each docker-bake.json target with the legacy builder (`docker buildx bake` is not in bookworm,
#      and BuildKit cannot fetch the `# syntax=` frontend offline): the same build args and tags as bake,
#      for this machine's architecture only, with the host network (containers have no route out),
#      then every module of the image's package is imported inside it (a missing dependency shows);
#   4. `bmsgate run --simulate-packs 1` in the all-in-one image (bmsgate/bmsgate) against a local
#      mosquitto, both on the host network: /healthz and the simulated pack's state must answer, then the OCI labels
#      (docker inspect) and the image sizes (docker images) are printed; then the api image alone with
#      compose's deploy/bmsgate.yaml: /healthz, the chart library, compose's healthcheck script.
# Not part of ./test.sh: the suite stays fast and needs no Docker. Everything lands outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/docker_engine.sh  # the engine, stand-ins and builds, shared with the compose lane
VERSION=${VERSION:-$(.tools/bin/uv version --short)}
HTTP_PORT=${HTTP_PORT:-18480}     # the api inside the image; free ports on a shared machine
BROKER_PORT=${BROKER_PORT:-18483}
MODBUS_PORT=${MODBUS_PORT:-18502}

[[ $(id -u) == 0 ]] || { echo "run as root (dockerd, mmdebstrap)" >&2; exit 1; }
command -v mosquitto >/dev/null || apt-get install -y --no-install-recommends mosquitto
engine_tools     # 1. the engine
engine_start
engine_standins  # 2. stand-ins, named exactly as the Dockerfile names its bases
engine_build "$@"  # 3. the images

# 4. start the all-in-one image against a local broker and ask it
if docker image inspect "$REGISTRY/bmsgate:$VERSION" >/dev/null 2>&1; then
  run=$(mktemp -d)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$BROKER_PORT" >"$run/mosquitto.conf"
  mosquitto -c "$run/mosquitto.conf" >"$run/mosquitto.log" 2>&1 &
  broker=$!
  cleanup() { docker rm -f bmsgate-imagecheck >/dev/null 2>&1 || true; kill "$broker"; rm -rf "$run"; }
  trap cleanup EXIT
  answers() {  # URL PATTERN: wait up to 90 s for an answer holding PATTERN, print its start
    local out
    for _ in $(seq 90); do
      if out=$(curl -fsS "$1" 2>/dev/null) && grep -q "$2" <<<"$out"; then
        printf '%s: %s\n' "$1" "${out:0:300}"
        return
      fi
      sleep 1
    done
    echo "no answer with $2 from $1" >&2
    docker logs --tail 30 bmsgate-imagecheck >&2
    exit 1
  }
  say "docker run $REGISTRY/bmsgate:$VERSION: bmsgate run --simulate-packs 1"
  docker run -d --name bmsgate-imagecheck --network host \
    -e BMSGATE_MQTT__HOST=127.0.0.1 -e BMSGATE_MQTT__PORT="$BROKER_PORT" -e BMSGATE_API__HOST=127.0.0.1 \
    -e BMSGATE_MODBUS__HOST=127.0.0.1 \
    "$REGISTRY/bmsgate:$VERSION" bmsgate run --simulate-packs 1 \
    --http-port "$HTTP_PORT" --modbus-port "$MODBUS_PORT" >/dev/null
  answers "http://127.0.0.1:$HTTP_PORT/healthz" '"backbone":true'
  answers "http://127.0.0.1:$HTTP_PORT/api/packs/sim-1/state" '"pack_voltage"'
  docker logs bmsgate-imagecheck 2>&1 | tail -n 5
  docker inspect --format '{{json .Config.Labels}}' "$REGISTRY/bmsgate:$VERSION"
  docker rm -f bmsgate-imagecheck >/dev/null
  if docker image inspect "$REGISTRY/api:$VERSION" >/dev/null 2>&1; then
    say "docker run $REGISTRY/api:$VERSION with compose's deploy/bmsgate.yaml"
    docker run -d --name bmsgate-imagecheck --network host \
      -v "$PWD/deploy/bmsgate.yaml:/config/bmsgate.yaml:ro" -e BMSGATE_MQTT__HOST=127.0.0.1 \
      -e BMSGATE_MQTT__PORT="$BROKER_PORT" -e BMSGATE_API__HOST=127.0.0.1 -e BMSGATE_API__PORT="$HTTP_PORT" \
      "$REGISTRY/api:$VERSION" python -m bmsgate_api --config /config/bmsgate.yaml >/dev/null
    answers "http://127.0.0.1:$HTTP_PORT/healthz" '"backbone":true'
    answers "http://127.0.0.1:$HTTP_PORT/vendor/uplot/uPlot.iife.min.js" 'uPlot'
    docker exec bmsgate-imagecheck python /app/healthcheck.py api && echo "compose's healthcheck: healthy"
    docker inspect --format '{{json .Config.Labels}}' "$REGISTRY/api:$VERSION"
  fi
fi
say "images"
docker images --format 'table {{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E "^$REGISTRY/.*:$VERSION|^python|^node|^ghcr"
