#!/usr/bin/env bash
# Build bmsgate's images for real on a Debian bookworm machine with no container registry, then
# start one and check it: scripts/build_images.sh [TARGET...]   (default: every docker-bake.json target)
#
# What it does (docs/release.md, "Building the images here"; needs root, about 11 min from nothing):
#   1. a Docker engine: Debian's docker.io, dockerd started by hand (no systemd), its data in $CACHE;
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

CACHE=${BMSGATE_DOCKER_CACHE:-/var/cache/bmsgate-docker}
REGISTRY=${REGISTRY:-bmsgate}
VERSION=${VERSION:-$(.tools/bin/uv version --short)}
REVISION=${REVISION:-$(git rev-parse HEAD)}
HTTP_PORT=${HTTP_PORT:-18480}     # the api inside the image; free ports on a shared machine
BROKER_PORT=${BROKER_PORT:-18483}
MODBUS_PORT=${MODBUS_PORT:-18502}
export DOCKER_BUILDKIT=0

say() { printf '== %s\n' "$*"; }
[[ $(id -u) == 0 ]] || { echo "run as root (dockerd, mmdebstrap)" >&2; exit 1; }
for tool in dockerd:docker.io mmdebstrap:mmdebstrap mosquitto:mosquitto curl:curl; do
  command -v "${tool%%:*}" >/dev/null || apt-get install -y --no-install-recommends "${tool#*:}"
done
mkdir -p "$CACHE/standins"

# 1. the engine
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (data in $CACHE/engine, log $CACHE/dockerd.log)"
  dockerd --data-root "$CACHE/engine" --exec-root /var/run/bmsgate-docker \
    --pidfile /var/run/bmsgate-dockerd.pid --host unix:///var/run/docker.sock \
    --storage-driver overlay2 --iptables=false --ip-forward=false --ip-masq=false \
    >"$CACHE/dockerd.log" 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null
fi

# 2. stand-ins, named exactly as the Dockerfile names its bases
rootfs() {  # NAME PACKAGES HOOK: a bookworm minbase tarball, made once
  [[ -s $CACHE/standins/$1.tar ]] && return
  mmdebstrap --variant=minbase --include="$2" --customize-hook="$3" bookworm "$CACHE/standins/$1.tar.part"
  mv "$CACHE/standins/$1.tar.part" "$CACHE/standins/$1.tar"
}
# the host's trust store goes into the python/node stand-ins: where the network inspects TLS (as
# here), npm and uv inside the build must trust what the host trusts (uv and node read these vars)
trust_host_ca() {
  local dir
  dir=$(mktemp -d)
  cp /etc/ssl/certs/ca-certificates.crt "$dir/"
  printf 'FROM %s\nCOPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n%s\n' "$1" \
    'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    >"$dir/Dockerfile"
  docker build -q -t "$1" "$dir" >/dev/null
  rm -rf "$dir"
}
# the official images set PATH in their config; the Dockerfile extends it (ENV PATH=...:$PATH)
OFFICIAL_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
for image in $(sed -n 's/^FROM \([^ ]*\).*/\1/p' Dockerfile | sort -u); do
  docker image inspect "$image" >/dev/null 2>&1 && continue
  say "stand-in $image"
  case $image in
    python:*)  # the official image's interpreter is /usr/local/bin/python3
      rootfs python python3,ca-certificates \
        'for n in python python3 python3.11; do ln -sf /usr/bin/python3.11 "$1/usr/local/bin/$n"; done'
      docker import --change "ENV PATH=$OFFICIAL_PATH" --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        "$CACHE/standins/python.tar" "$image"
      trust_host_ca "$image" ;;
    node:*)
      rootfs node nodejs,npm,ca-certificates \
        'ln -sf /usr/bin/node "$1/usr/local/bin/node"; ln -sf /usr/bin/npm "$1/usr/local/bin/npm"'
      docker import --change "ENV PATH=$OFFICIAL_PATH" --change 'CMD ["node"]' "$CACHE/standins/node.tar" "$image"
      trust_host_ca "$image" ;;
    ghcr.io/astral-sh/uv:*)  # the official image holds /uv and /uvx only
      uv_version=${image##*:}
      mkdir -p "$CACHE/standins/uv"
      .tools/bin/pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
        "uv==$uv_version" -d "$CACHE/standins/uv"
      python3 - "$CACHE/standins/uv" "$uv_version" <<'EOF'
import glob, io, sys, tarfile, zipfile
folder, version = sys.argv[1:]
wheel = zipfile.ZipFile(glob.glob(f"{folder}/uv-{version}-*.whl")[0])
with tarfile.open(f"{folder}/uv.tar", "w") as tar:
    for name in ("uv", "uvx"):
        data = wheel.read(f"uv-{version}.data/scripts/{name}")
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
EOF
      docker import --change 'CMD ["/uv"]' "$CACHE/standins/uv/uv.tar" "$image" ;;
    *) echo "no stand-in recipe for $image" >&2; exit 1 ;;
  esac
done

# 3. the images: docker-bake.json's targets, args and tags (one place), one architecture
mapfile -t TARGETS < <(python3 - "$@" <<'EOF'
import json, sys
bake = json.load(open("docker-bake.json"))
wanted = sys.argv[1:] or bake["group"]["default"]["targets"]
for name in wanted:
    args = bake["target"][name]["args"]
    print(name, args["PACKAGE"], args["MODULE"])
EOF
)
for line in "${TARGETS[@]}"; do
  read -r name package module <<<"$line"
  say "build $REGISTRY/$name:$VERSION ($package, $module)"
  start=$(date +%s)
  docker build --network host --build-arg PACKAGE="$package" --build-arg MODULE="$module" \
    --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" \
    -t "$REGISTRY/$name:$VERSION" -t "$REGISTRY/$name:latest" . >"$CACHE/build-$name.log" 2>&1 \
    || { tail -n 30 "$CACHE/build-$name.log"; exit 1; }
  say "built $REGISTRY/$name:$VERSION in $(($(date +%s) - start)) s"
  # every module of the image's package imports with only what the image installed
  docker run --rm --network none "$REGISTRY/$name:$VERSION" python -c '
import importlib, pkgutil, sys
top = importlib.import_module(sys.argv[1].split(".")[0])
bad = []
for m in pkgutil.walk_packages(top.__path__, top.__name__ + "."):
    if not m.name.endswith("__main__"):
        try:
            importlib.import_module(m.name)
        except ImportError as err:
            bad.append(f"{m.name}: {err}")
sys.exit("\n".join(bad)) if bad else print("every module of", top.__name__, "imports")
' "$module" 2>&1 | grep -v 'IPv4 forwarding'
done

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
