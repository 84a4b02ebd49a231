# A Docker engine and bmsgate's images on a Debian bookworm machine with no container registry.
# Sourced (not run) by scripts/build_images.sh and scripts/ecosystem_docker.sh, so the image check
# and the test suite's compose lane share one way of doing it (docs/release.md, docs/deploy.md).
# Needs root. Everything lands in $CACHE, outside the clone, so a second run starts in seconds:
#   engine/      dockerd's data root (images, build cache, volumes)
#   standins/    the bookworm rootfs tarballs and uv wheel the stand-in base images are made from
#   plugins/     Compose v2 and buildx, unpacked from Debian trixie's packages
CACHE=${BMSGATE_DOCKER_CACHE:-/var/cache/bmsgate-docker}
REGISTRY=${REGISTRY:-bmsgate}
export DOCKER_BUILDKIT=0  # BuildKit cannot fetch the `# syntax=` frontend offline; legacy ignores it
PLUGINS=/usr/local/lib/docker/cli-plugins
TRIXIE=http://deb.debian.org/debian

say() { printf '== %s\n' "$*"; }

# Debian's docker.io, mmdebstrap for the stand-ins, and Compose v2: bookworm's docker-compose is
# 1.29 (it rejects the file), trixie's docker-compose and docker-buildx are CLI plugins that unpack
# as they are. apt-get download reads trixie from a sources file of its own (the host's apt
# sources and state stay bookworm's).
engine_tools() {
  local missing=() tool
  for tool in dockerd:docker.io mmdebstrap:mmdebstrap curl:curl; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
  done
  if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  docker compose version >/dev/null 2>&1 && return
  say "Compose v2 from Debian trixie into $PLUGINS"
  local apt=$CACHE/plugins/apt
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$PLUGINS"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $TRIXIE trixie main" \
    >"$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" update -qq
  (cd "$CACHE/plugins" && apt-get "${opts[@]}" download docker-compose docker-buildx >/dev/null)
  local deb
  for deb in "$CACHE"/plugins/docker-compose_*.deb "$CACHE"/plugins/docker-buildx_*.deb; do
    dpkg -x "$deb" "$CACHE/plugins/root"
  done
  cp "$CACHE"/plugins/root/usr/libexec/docker/cli-plugins/docker-{compose,buildx} "$PLUGINS/"
  docker compose version
}

# dockerd started by hand (no systemd here), no iptables: nothing is forwarded or masqueraded
engine_start() {
  docker info >/dev/null 2>&1 && return
  say "starting dockerd (data in $CACHE/engine, log $CACHE/dockerd.log)"
  mkdir -p "$CACHE"
  dockerd --data-root "$CACHE/engine" --exec-root /var/run/bmsgate-docker \
    --pidfile /var/run/bmsgate-dockerd.pid --host unix:///var/run/docker.sock \
    --storage-driver overlay2 --iptables=false --ip-forward=false --ip-masq=false \
    >>"$CACHE/dockerd.log" 2>&1 &
  local _
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
  docker info >/dev/null
}

# a bookworm minbase tarball, made once: NAME PACKAGES HOOK
_rootfs() {
  [[ -f $CACHE/standins/$1.tar && -s $CACHE/standins/$1.tar ]] && return
  rm -rf "$CACHE/standins/$1.tar" "$CACHE/standins/$1.tar.part"
  # --format: the name's suffix (.part) would otherwise make mmdebstrap write a directory
  mmdebstrap --variant=minbase --format=tar --include="$2" --customize-hook="$3" bookworm \
    "$CACHE/standins/$1.tar.part"
  mv "$CACHE/standins/$1.tar.part" "$CACHE/standins/$1.tar"
}

# the host's trust store goes into the python/node stand-ins: where the network inspects TLS (as
# here), npm and uv inside the build must trust what the host trusts (uv and node read these vars)
_trust_host_ca() {
  local dir
  dir=$(mktemp -d)
  cp /etc/ssl/certs/ca-certificates.crt "$dir/"
  printf 'FROM %s\nCOPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n%s\n' "$1" \
    'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    >"$dir/Dockerfile"
  docker build -q -t "$1" "$dir" >/dev/null
  rm -rf "$dir"
}

# an image FROM the python stand-in with Debian packages added (host network: no route out)
_debian_image() {  # NAME DOCKERFILE-LINES
  local dir
  dir=$(mktemp -d)
  printf 'FROM %s\n%s\n' "$(python_base)" "$2" >"$dir/Dockerfile"
  docker build -q --network host -t "$1" "$dir" >/dev/null
  rm -rf "$dir"
}

python_base() { sed -n 's/^FROM \(python:[^ ]*\).*/\1/p' Dockerfile | head -n 1; }

# the official images set PATH in their config; the Dockerfile extends it (ENV PATH=...:$PATH)
OFFICIAL_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# stand-ins under the exact names the Dockerfile's FROM lines (and, with `compose`, the compose
# file's third-party images) use, laid out like the official images
engine_standins() {
  mkdir -p "$CACHE/standins"
  local image uv_version
  # python first: the node stand-in is made from it
  for image in $(sed -n 's/^FROM \([^ ]*\).*/\1/p' Dockerfile | sort -u | sort -s -k1,1 -t: -r); do
    docker image inspect "$image" >/dev/null 2>&1 && continue
    say "stand-in $image"
    case $image in
      python:*)  # the official image's interpreter is /usr/local/bin/python3
        _rootfs python python3,ca-certificates \
          'for n in python python3 python3.11; do ln -sf /usr/bin/python3.11 "$1/usr/local/bin/$n"; done'
        docker import --change "ENV PATH=$OFFICIAL_PATH" --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
          "$CACHE/standins/python.tar" "$image"
        _trust_host_ca "$image" ;;
      node:*)  # Debian's nodejs and npm added to the python stand-in: minutes faster than a rootfs
        _debian_image "$image" 'RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null && rm -rf /var/lib/apt/lists/* && ln -sf /usr/bin/node /usr/local/bin/node && ln -sf /usr/bin/npm /usr/local/bin/npm
CMD ["node"]' ;;
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
      *) echo "no stand-in recipe for $image" >&2; return 1 ;;
    esac
  done
}

# the compose stack's own third-party images that can be had from Debian: mosquitto under its
# compose name (the official image's paths: /mosquitto/{config,data}, user mosquitto), and
# VictoriaMetrics, which takes InfluxDB 2's write API, for the lane's influxdb service
engine_compose_standins() {
  local mosquitto
  mosquitto=$(sed -n 's/^ *image: \(eclipse-mosquitto:[^ ]*\).*/\1/p' docker-compose.yml)
  if ! docker image inspect "$mosquitto" >/dev/null 2>&1; then
    say "stand-in $mosquitto"
    _debian_image "$mosquitto" 'RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends mosquitto mosquitto-clients >/dev/null && rm -rf /var/lib/apt/lists/* && mkdir -p /mosquitto/config /mosquitto/data && chown mosquitto /mosquitto/data
CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]'
  fi
  if ! docker image inspect bmsgate-standin/victoriametrics >/dev/null 2>&1; then
    say "stand-in bmsgate-standin/victoriametrics (InfluxDB's write API)"
    _debian_image bmsgate-standin/victoriametrics 'RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends victoria-metrics >/dev/null && rm -rf /var/lib/apt/lists/*
CMD ["/usr/bin/victoria-metrics", "-httpListenAddr=:8086", "-storageDataPath=/var/lib/influxdb2"]'
  fi
}

# docker-bake.json's targets (default: all), their args and tags (one place), this architecture
# only, built with the legacy builder and the host network; each image's modules must import
engine_build() {
  local version revision line name package module start
  version=${VERSION:-$(.tools/bin/uv version --short)}
  revision=${REVISION:-$(git rev-parse HEAD)}
  mapfile -t lines < <(python3 - "$@" <<'EOF'
import json, sys
bake = json.load(open("docker-bake.json"))
wanted = sys.argv[1:] or bake["group"]["default"]["targets"]
for name in wanted:
    args = bake["target"][name]["args"]
    print(name, args["PACKAGE"], args["MODULE"])
EOF
  )
  for line in "${lines[@]}"; do
    read -r name package module <<<"$line"
    start=$(date +%s)
    docker build --network host --build-arg PACKAGE="$package" --build-arg MODULE="$module" \
      --build-arg VERSION="$version" --build-arg REVISION="$revision" \
      -t "$REGISTRY/$name:$version" -t "$REGISTRY/$name:latest" . >"$CACHE/build-$name.log" 2>&1 \
      || { tail -n 30 "$CACHE/build-$name.log"; return 1; }
    say "built $REGISTRY/$name:$version in $(($(date +%s) - start)) s"
    docker run --rm --network none "$REGISTRY/$name:$version" python -c '
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
}
