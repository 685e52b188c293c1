#!/usr/bin/env bash
# Runs the whole CPU test suite (GPU tests are marked and deselected here).
# Run scripts/install.sh once first on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
lint-imports
exec python3 -m pytest "$@"
