#!/usr/bin/env bash
# Installs everything the service, its worker and its tests need on a fresh
# Debian/Ubuntu machine with Python 3.11+: system packages (Redis, Chromium for
# the browser tests), the Python package with its extras, and the Khronos glTF
# validator (node) used by the tests.  Safe to run again: it skips what is there.
#
#   bash scripts/install.sh            # service + worker (CPU) + test tools
#   SYNCHUMAN_NO_APT=1 bash scripts/install.sh   # skip apt (no root)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

if [ -z "${SYNCHUMAN_NO_APT:-}" ] && command -v apt-get >/dev/null; then
  missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v node >/dev/null || missing+=(nodejs npm)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# The CPU build of torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
$PY -m pip install -q --disable-pip-version-check "torch==2.13.0"
$PY -m pip install -q --disable-pip-version-check -e ".[worker,segment,onnx,dev]"

if command -v npm >/dev/null && [ ! -d .tools/node_modules/gltf-validator ]; then
  npm install --silent --no-audit --no-fund --prefix .tools gltf-validator@2.0.0-dev.3.10 >/dev/null
fi
if command -v npm >/dev/null && [ ! -f .tools/node_modules/@google/model-viewer/dist/model-viewer.min.js ]; then npm install --silent --no-audit --no-fund --prefix .tools @google/model-viewer@4.4.0 >/dev/null; fi  # the web page's 3D viewer (api/routes/ui.py serves it)
echo "install complete"
