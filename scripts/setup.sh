#!/usr/bin/env bash
# Sets up what bmsgate needs on Debian/Ubuntu, idempotently:
#   Debian packages (apt-get, as root; otherwise it says what to install), then uv in .tools/ and
#   the project's Python environment in .venv/ from the lockfile.
# Usage: scripts/setup.sh run|test
set -euo pipefail
cd "$(dirname "$0")/.."
purpose="${1:-run}"

packages=(mosquitto)                                  # the backbone broker `bmsgate run` starts
[[ "$purpose" == test ]] && packages+=(mosquitto-clients openssl)  # openssl: TLS test certificates
[[ "$purpose" == test ]] && packages+=(mbpoll)                 # an independent Modbus TCP client
[[ "$purpose" == test ]] && packages+=(victoria-metrics)       # a real InfluxDB-write-API server
[[ "$purpose" == test ]] && packages+=(chromium)               # the web UI's browser tests
command -v npm >/dev/null || packages+=(npm)                  # the web UI's chart library
[[ "$purpose" == test ]] && packages+=(socat)                  # virtual COM ports for the tunnel
[[ "$purpose" == test ]] && packages+=(faketime)               # a process's own wall clock moved
[[ "$purpose" == test ]] && packages+=(strace)                 # fsync order of durable writes
[[ "$purpose" == test ]] && packages+=(gcc)                    # the wall-clock shim of the clock tests
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
  echo "bmsgate: Python 3.11 or newer is needed as python3 (Debian 12 / Ubuntu 24.04 have it)" >&2
  exit 1
}
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "bmsgate: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bmsgate: missing Debian packages: ${missing[*]}" >&2
    echo "         run this as root, or first: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

UV_VERSION=0.13.9
if [[ ! -x .tools/bin/uv ]] || [[ "$(.tools/bin/uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]]; then
  python3 -m venv .tools
  .tools/bin/pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
groups=(--no-dev)
[[ "$purpose" == test ]] && groups=()
UV_PYTHON_DOWNLOADS=never .tools/bin/uv sync --quiet --frozen --all-packages \
  --python "$(command -v python3)" "${groups[@]}"

# the web UI's browser libraries (uPlot), from the lockfile into the package's static folder;
# tests add its dev dependency axe-core (the accessibility walk, tests/browser/test_web_walk.py)
web_deps=(--omit=dev)
[[ "$purpose" == test ]] && web_deps=()
npm ci --silent --no-audit --no-fund "${web_deps[@]}" --prefix services/api/src/bmsgate_api/static
# tests: Grafana's published dashboard schema and the TypeScript compiler that checks against it
[[ "$purpose" == test ]] && npm ci --silent --no-audit --no-fund --prefix tests/deploy/grafana_schema
