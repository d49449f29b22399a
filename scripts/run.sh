#!/usr/bin/env bash
# Set-up, build, then run the default scenario through the simulator. Extra arguments go to
# `dwdp run` (e.g. --format json, --trace trace.json, --mode functional on a small scenario).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh default >/dev/null
exec ./build/default/cli/dwdp run scenarios/default.yaml "$@"
