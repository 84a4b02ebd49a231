#!/usr/bin/env bash
# Build a Debian testing (Python 3.14) chroot holding one Home Assistant release, for the
# ecosystem lane (tests/ecosystem/test_homeassistant.py, docs/homeassistant.md).
#
#   scripts/homeassistant_chroot.sh VERSION [CACHE]   -> prints the chroot's path
#
# The chroot is cached outside the clone under CACHE/VERSION (default /var/cache/bmsgate-ha) and
# built only when missing: first into a temporary directory, renamed when complete, so an
# interrupted build never leaves a half chroot that looks ready. Needs root and mmdebstrap
# (installed with apt-get when missing), and network access to deb.debian.org and PyPI.
#
# Besides homeassistant itself, the Python requirements of the integrations the lane loads (the
# ones Home Assistant loads at every start, plus mqtt, recorder, energy and their dependencies)
# are installed here, so Home Assistant runs with --skip-pip and never installs at test time.
set -euo pipefail

VERSION="${1:?usage: $0 HOMEASSISTANT_VERSION [CACHE_DIR]}"
CACHE="${2:-/var/cache/bmsgate-ha}"
ROOT="$CACHE/$VERSION"
HERE="$(cd "$(dirname "$0")/.." && pwd)"

if [[ -f "$ROOT/.ready" ]]; then
  echo "$ROOT"
  exit 0
fi
if [[ $EUID -ne 0 ]]; then
  echo "homeassistant_chroot: building the chroot needs root (mmdebstrap, chroot)" >&2
  exit 1
fi
if ! command -v mmdebstrap >/dev/null; then
  apt-get install -y --no-install-recommends mmdebstrap >&2
fi
UV="$HERE/.tools/bin/uv"
[[ -x "$UV" ]] || UV="$(command -v uv)"

mkdir -p "$CACHE"
# one build at a time: a second lane waits, then finds the chroot ready (never replaces one in use)
exec 9>"$CACHE/.lock"
flock 9
if [[ -f "$ROOT/.ready" ]]; then
  echo "$ROOT"
  exit 0
fi
BUILD="$(mktemp -d "$CACHE/.build-$VERSION.XXXXXX")"
trap 'rm -rf "$BUILD"' EXIT
rmdir "$BUILD" # mmdebstrap wants to create it

# Debian testing has Python 3.14, which current Home Assistant releases require; g++ and the
# Python headers build the few requirements without a cp314 wheel (pyspeex-noise). libturbojpeg,
# ffmpeg and the like are left out: the lane's integrations do not use them.
# The mirror here serves a Release file past its Valid-Until date, so that check is off. The
# host's trust store goes in (where the network inspects TLS, uv must trust what the host trusts).
export SSL_CERT_FILE=/etc/ssl/certs/host-ca.crt
mmdebstrap --variant=minbase --mode=root \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  --include=python3,python3-dev,g++,ca-certificates,tzdata \
  --customize-hook='cp "'"$UV"'" "$1/usr/local/bin/uv"' \
  --customize-hook='cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/host-ca.crt"' \
  --customize-hook='chroot "$1" uv venv --quiet --python /usr/bin/python3 /srv/ha' \
  --customize-hook='chroot "$1" uv pip install --quiet --python /srv/ha/bin/python "homeassistant=='"$VERSION"'"' \
  --customize-hook='cp "'"$HERE"'/scripts/homeassistant_requirements.py" "$1/srv/requirements.py"' \
  --customize-hook='chroot "$1" /srv/ha/bin/python /srv/requirements.py >"$1/srv/requirements.txt"' \
  --customize-hook='chroot "$1" sh -c "uv pip install --quiet --python /srv/ha/bin/python -r /srv/requirements.txt -c \$(/srv/ha/bin/python -c \"import homeassistant, pathlib; print(pathlib.Path(homeassistant.__file__).parent / \\\"package_constraints.txt\\\")\")"' \
  --customize-hook='rm -rf "$1/var/cache/apt" "$1/var/lib/apt/lists" "$1/root/.cache"' \
  testing "$BUILD" http://deb.debian.org/debian >&2

touch "$BUILD/.ready"
rm -rf "$ROOT" # an interrupted build's leftovers (no .ready), never a finished chroot
mv "$BUILD" "$ROOT"
trap - EXIT
echo "$ROOT"
